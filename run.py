#!/usr/bin/env python3
"""Entry point: `python run.py` paper-trades on the embedded exchange; --help lists the rest."""

import gc
import sys

from executor.cli import main

if __name__ == "__main__":
    code = main()
    # The work is done; what remains is the interpreter's teardown, whose garbage collections
    # walk every object still tracked (module globals, caches, an audit's interned rows) only to
    # find them unreachable through cycles no one needs broken before the process ends: ~0.13 s
    # of a `run.py audit` on a million fills, ~0.05 s with the objects frozen out of the
    # collector's view (bench/RESULTS.md, "#16 audit start-up and teardown"). ``gc.freeze`` is
    # O(1) and changes nothing else: atexit handlers, logging's flush and stdout's flush still
    # run, objects are still freed by reference count; only cyclic garbage left at exit is not
    # collected, which the OS reclaims with the process anyway. Here, not in ``main``, so tests
    # that call ``main`` in-process keep their collector as it was.
    gc.freeze()
    sys.exit(code)
