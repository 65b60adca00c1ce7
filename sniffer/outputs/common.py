"""What every output shares, files and network destinations alike: its counters and its warning line.

Apart from delivery.py so that a run writing only files does not load the sender threads' code.
"""

from __future__ import annotations

import sys

COUNTERS = ("events_written", "outputs_retried", "events_spooled", "events_dropped", "events_rejected", "spool_torn")


def warn(message: str) -> None:
    print(f"helloscope: warning: {message}", file=sys.stderr, flush=True)
