"""Run every fuzz target for a while, a few at a time, and tabulate executions and findings (``make fuzz``).

    python -m fuzz.campaign [--seconds 600] [--jobs 2] [--corpus ../shared/corpus] [TARGET...]

Seeds are regenerated first (fuzz/seeds-out, kept between runs so coverage accumulates); each target's
libFuzzer log goes to fuzz/logs/TARGET.log and a crashing input to fuzz/findings/. Exits 1 on a finding.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fuzz.seeds import DEFAULT_OUT, generate
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "fuzz" / "logs"
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def run_target(name: str, seconds: int) -> tuple[str, int, int, int]:
    """(name, executions, seconds, exit code) for one target; the log is kept next to the others."""
    log = LOGS / f"{name}.log"
    with log.open("w") as out:
        code = subprocess.run(
            [sys.executable, "-m", "fuzz.run", name, str(seconds)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=seconds + 300,
            check=False,
        ).returncode
    done = _DONE.search(log.read_text(errors="replace"))
    # A finding stops libFuzzer before "Done": the executions are then unknown (-1).
    return name, int(done[1]) if done else -1, int(done[2]) if done else 0, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("targets", nargs="*", default=sorted(TARGETS))
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {' '.join(sorted(unknown))}")
    generate(DEFAULT_OUT, args.corpus)
    LOGS.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda name: run_target(name, args.seconds), args.targets))
    findings = 0
    print(f"{'target':28} {'executions':>12} {'seconds':>8}  result")
    for name, executions, seconds, code in results:
        findings += code != 0
        verdict = "no finding" if code == 0 else f"FINDING (exit {code}, see fuzz/logs/{name}.log)"
        print(f"{name:28} {executions:>12} {seconds:>8}  {verdict}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
