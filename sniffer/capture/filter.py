"""``analyze --bpf``: the tcpdump expression ``live`` gives the kernel, run by libpcap on frames read from files."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable, Iterator

from helloscope.sniffer.capture.rings import BpfInsn, compile_program, load_libpcap

Frame = tuple[float, int, bytes]
# Any caplen a file holds passes; the expression alone decides.
_SNAPLEN = 262144


def frame_filter(expression: str) -> Callable[[int, bytes], bool]:
    """Whether a frame of a link type matches ``expression``; compiled once per link type met.

    Raises LiveCaptureError (one line) for an expression libpcap refuses for a link type.
    """
    lib = load_libpcap()
    programs: dict[int, ctypes.Array[BpfInsn]] = {}

    def matches(linktype: int, frame: bytes) -> bool:
        program = programs.get(linktype)
        if program is None:
            code = compile_program(expression, linktype, _SNAPLEN)
            program = programs[linktype] = (BpfInsn * (len(code) // ctypes.sizeof(BpfInsn))).from_buffer_copy(code)
        return bool(lib.bpf_filter(program, frame, len(frame), len(frame)))

    return matches


def filtered(frames: Iterable[Frame], matches: Callable[[int, bytes], bool]) -> Iterator[Frame]:
    return (frame for frame in frames if matches(frame[1], frame[2]))
