"""The one atheris runner for every target in fuzz/targets.py.

    python -m fuzz.run TARGET [SECONDS] [libFuzzer flags...]

Coverage comes from instrumenting ``helloscope.parsers`` and ``helloscope.sniffer`` (the pipeline the
core_capture target runs). The seed directory is
fuzz/seeds-out/TARGET (made by ``python -m fuzz.seeds`` when missing); new coverage-increasing inputs
go to fuzz/seeds-out/TARGET too (or $FUZZ_SEEDS/TARGET), and a crashing input to fuzz/findings/TARGET-crash-<hash>. Any
exception other than ParseError is a finding: libFuzzer stops and exits non-zero. At the end it
prints "Done N runs in S second(s)", the count the README records.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = ROOT / "fuzz" / "findings"

with atheris.instrument_imports(include=["helloscope.parsers", "helloscope.sniffer"]):
    from fuzz.targets import TARGETS, check


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: python -m fuzz.run TARGET [SECONDS] [libFuzzer flags]; targets: {' '.join(TARGETS)}")
    name = argv[1]
    seconds = argv[2] if len(argv) > 2 and argv[2].isdigit() else "60"
    extra = argv[3:] if len(argv) > 2 and argv[2].isdigit() else argv[2:]
    # FUZZ_SEEDS points at another seed root (the smoke test uses a temporary one).
    root = Path(os.environ.get("FUZZ_SEEDS", ROOT / "fuzz" / "seeds-out"))
    seeds = root / name
    if not seeds.is_dir():
        from fuzz.seeds import generate

        generate(root)
    FINDINGS.mkdir(parents=True, exist_ok=True)
    target = TARGETS[name]

    def one_input(data: bytes) -> None:
        check(target, data)

    flags = [
        f"-max_total_time={seconds}",
        f"-artifact_prefix={FINDINGS}/{name}-",
        "-max_len=20000",
        "-timeout=10",  # seconds per input: a hang is a finding too
        "-rss_limit_mb=2048",  # so is unbounded allocation
        "-print_final_stats=1",
        *extra,
        str(seeds),
    ]
    atheris.Setup([argv[0], *flags], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
