"""The live capture's defaults, apart from rings.py: ``--help`` and option parsing show them without
loading the capture code (ctypes, mmap) that a file analysis never uses.
"""

from __future__ import annotations

from typing import Final

DEFAULT_SNAPLEN: Final = 262_144  # as tcpdump's: every frame whole
DEFAULT_BUFFER_MB: Final = 64
