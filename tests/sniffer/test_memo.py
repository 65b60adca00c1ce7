"""sniffer.memo: results kept for repeated inputs, never for inputs longer than the bound."""

from __future__ import annotations

from helloscope.sniffer.memo import repeated


def test_a_repeated_input_is_worked_out_once_and_an_over_long_one_every_time_unkept() -> None:
    calls: list[object] = []

    @repeated(entries=2, longest=3)
    def joined(values: tuple[int, ...], name: str) -> str:
        calls.append(values)
        return name + "-".join(map(str, values))

    assert joined((1, 2), "a") == joined((1, 2), "a") == "a1-2"
    assert len(calls) == 1
    long = (1, 2, 3, 4)
    assert joined(long, "b") == joined(long, "b") == "b1-2-3-4"
    assert len(calls) == 3  # worked out each time
    assert joined.cache_info().currsize == 1  # type: ignore[attr-defined]  # and never kept
    assert joined((5,), "a" * 4) == "aaaa5" and joined.cache_info().currsize == 1  # type: ignore[attr-defined]
    joined((6,), "c"), joined((7,), "c")
    assert joined.cache_info().currsize == 2  # type: ignore[attr-defined]  # least recently used out
