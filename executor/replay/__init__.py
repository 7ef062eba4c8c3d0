"""Record and replay market data: the recording format, the recorder, Binance's public data
import, replay runs of the unchanged bot against the embedded exchange, and parameter sweeps.

The format is documented in ``executor/replay/format.py``; the exchange side of a replay
(the recording driving books, marks and the clock) is ``executor/sim/replay_source.py``.
"""
