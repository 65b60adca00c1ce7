"""Compressed input (logrotate's ``compress``, ``tcpdump | xz``), recognised by its first bytes, never by name.

gzip, xz and bzip2 come with Python; zstd needs the optional ``zstandard`` package (``helloscope[zstd]``).
"""

from __future__ import annotations

import io
import zlib
from typing import Any, BinaryIO, cast

GZIP = "gzip"
XZ = "xz"
BZIP2 = "bzip2"
ZSTD = "zstd"
_MAGICS = ((b"\x1f\x8b", GZIP), (b"\xfd7zXZ\x00", XZ), (b"BZh", BZIP2), (b"\x28\xb5\x2f\xfd", ZSTD))
PEEK = max(len(magic) for magic, _ in _MAGICS)


class CompressionError(Exception):
    """A compressed input that cannot be opened here (zstd without the zstandard package)."""


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged compressed stream raises, besides OSError (bz2's "Invalid data stream").

    For ``except read_errors():``, which evaluates the call only when something was raised: lzma and
    zstandard then load with the first xz or zstd file, or the first error, not at every start.
    """
    import lzma

    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError]
    try:
        from compression import zstd

        errors.append(zstd.ZstdError)
    except ImportError:
        pass
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errors)


def _zstd(stream: BinaryIO, path: str | None) -> Any:
    """A zstd reader: Python's own (3.14 and later), else the zstandard package."""
    try:
        from compression import zstd

        return zstd.ZstdFile(path if path is not None else stream, "rb")
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise CompressionError(
            "zstd-compressed: reading it needs the zstandard package (pip install 'helloscope[zstd]')"
        ) from None
    # several frames follow each other when compressed files were concatenated, as with gzip members
    source = open(path, "rb") if path is not None else stream  # noqa: SIM115 - the reader closes it
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=path is not None)
    return io.BufferedReader(reader)  # buffered, for the peek and readline the other readers have


def compression(prefix: bytes) -> str | None:
    """The compression whose magic starts ``prefix``, or None for plain data."""
    return next((kind for magic, kind in _MAGICS if prefix.startswith(magic)), None)


def decompressed(stream: BinaryIO, path: str | None) -> tuple[BinaryIO, str | None]:
    """``stream`` (with ``peek``), decompressed if its first bytes say so, and the compression's name.

    With ``path`` the file is reopened by name so that closing the result closes the file too; without,
    the result leaves ``stream`` (standard input) open when closed.
    """
    peek = getattr(stream, "peek", None)
    kind = compression(peek(PEEK)[:PEEK]) if peek is not None else None
    if kind is None:
        return stream, None
    if path is not None:
        stream.close()
    # The readers below are the caller's to close (they own the file when opened by name).
    opened: Any
    if kind == ZSTD:
        opened = _zstd(stream, path)
    elif kind == GZIP:
        import gzip  # each decompressor loads with the first such file

        opened = gzip.open(path, "rb") if path is not None else gzip.GzipFile(fileobj=stream, mode="rb")  # noqa: SIM115
    elif kind == XZ:
        import lzma

        opened = lzma.open(path if path is not None else stream, "rb")  # noqa: SIM115
    else:
        import bz2

        opened = bz2.open(path if path is not None else stream, "rb")  # noqa: SIM115
    return cast(BinaryIO, opened), kind
