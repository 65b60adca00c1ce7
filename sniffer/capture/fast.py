"""Which per-packet path runs: the C core (``_core``, built from ``_core.c``) or the pure-Python reference.

The C core is used when the extension was built (it is optional: a machine without a compiler installs
without it) and ``HELLOSCOPE_PURE`` is unset, empty or ``0``. The choice is made once, at import. Both
paths give identical frames, segments, records and events; the C functions hand everything outside the
common shapes back to the Python code, so the pure path stays the reference for all behaviour.

- :data:`split_pcap` / :data:`split_pcapng`: iterators over the frames of :class:`~.files.CaptureReader`'s
  buffer (their ``pos``, ``count`` and ``timestamp`` say how far they read), or None.
- :data:`Sieve`: what those iterators let take the frames Python would only drop or skim (a worker's
  foreign frames, the skimmer's packets) before they are made into objects; None without the C core.
- :func:`decode`: a :class:`~.decode.Segment`, None, or :data:`NOT_MINE` (then call ``decode.decode``).
- :data:`RecordReader`: the record framer the flow table should make per direction.
- :data:`flow_owner`: run.parallel's flow hash of a frame, or NOT_MINE; None without the C core.
- :data:`FlowSkimmer`: with the C core, what takes whole the packets of reported TCP connections that only
  keep them alive and, given a trace configuration, the in-order keyless TLS 1.3 bytes that only lengthen
  a connection's record trace (``decode(linktype, frame, timestamp)`` answers :data:`SKIMMED` for those);
  None without.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from helloscope.parsers.records import RecordReader as PureRecordReader
from helloscope.sniffer.capture.decode import decode as pure_decode


def _load() -> ModuleType | None:
    if os.environ.get("HELLOSCOPE_PURE", "") not in ("", "0"):
        return None
    try:
        from helloscope.sniffer.capture import _core
    except ImportError:
        return None
    return _core


core = _load()

# The pure path's decode never returns this object, so a caller's "is NOT_MINE" test costs it nothing.
NOT_MINE: object = object() if core is None else core.NOT_MINE
decode: Callable[[int, bytes], Any] = pure_decode if core is None else core.decode
split_pcap: Callable[..., Any] | None = None if core is None else core.split_pcap
split_pcapng: Callable[..., Any] | None = None if core is None else core.split_pcapng
RecordReader: type[PureRecordReader] = PureRecordReader if core is None else core.RecordReader
flow_owner: Callable[[int, bytes, int], Any] | None = None if core is None else core.flow_owner
FlowSkimmer: Callable[..., Any] | None = None if core is None else core.FlowSkimmer
Sieve: Any = None if core is None else core.Sieve
# The pure path's decoders never return this object.
SKIMMED: object = object() if core is None else core.SKIMMED
