#!/usr/bin/env python3
"""Entry point: `python run.py` paper-trades on the embedded exchange; --help lists the rest."""

import sys

from executor.cli import main

if __name__ == "__main__":
    sys.exit(main())
