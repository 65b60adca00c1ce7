#!/usr/bin/env python3
"""Time and peak RSS of parsing a large SSLKEYLOGFILE.

Generates a key log of N lines (default 1,000,000) shaped like a busy TLS 1.3 client's: per connection
the five TLS 1.3 secrets of 48 bytes (SHA-384 suites) or, every fifth connection, one TLS 1.2
CLIENT_RANDOM line; then parses it with ``parse_keylog_text`` in a child process and reads the child's
peak RSS with wait4 (the baseline, an interpreter that only imported the module, is printed too).

    python3 bench/keylog_scale.py [--lines N] [--chunk BYTES]

``--chunk`` feeds the text in pieces of that size, as a live sensor following a growing file does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
TLS13_LABELS = (
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET",
)


def generate(path: Path, lines: int) -> None:
    written = 0
    connection = 0
    with path.open("w") as handle:
        while written < lines:
            random = os.urandom(32).hex()
            if connection % 5 == 4:
                handle.write(f"CLIENT_RANDOM {random} {os.urandom(48).hex()}\n")
                written += 1
            else:
                for label in TLS13_LABELS[: lines - written]:
                    handle.write(f"{label} {random} {os.urandom(48).hex()}\n")
                    written += 1
            connection += 1


_CHILD = """
import json, sys, time
from helloscope.parsers.keylog import KeyLog, parse_keylog_text
path, chunk = sys.argv[1], int(sys.argv[2])
if path == "-":
    print(json.dumps({"seconds": 0, "secrets": 0, "problems": 0}))
    raise SystemExit
began = time.perf_counter()
with open(path, encoding="utf-8", errors="replace", newline="") as handle:
    if chunk:
        log = KeyLog()
        problems = []
        while text := handle.read(chunk):
            problems += log.feed(text)
        problems += log.finish()
    else:
        log, problems = parse_keylog_text(handle.read())
seconds = time.perf_counter() - began
print(json.dumps({"seconds": seconds, "secrets": len(log), "problems": len(problems)}))
"""


def measure(path: str, chunk: int) -> tuple[dict[str, float], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, path, str(chunk)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"parsing {path} failed (status {status})")
    return json.loads(output), round(usage.ru_maxrss / 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=0, help="feed pieces of this many characters (0: whole file)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"keylog-{args.lines}.txt"
    if not path.exists():
        generate(path, args.lines)
    _, baseline = measure("-", 0)
    result, rss = measure(str(path), args.chunk)
    print("| lines | file MB | feed | seconds | peak RSS MB | interpreter MB | secrets | problems |")
    print("|--:|--:|---|--:|--:|--:|--:|--:|")
    feed = f"{args.chunk:,}-char pieces" if args.chunk else "whole file"
    print(
        f"| {args.lines:,} | {path.stat().st_size / 1e6:.0f} | {feed} | {result['seconds']:.1f} | {rss} | {baseline} "
        f"| {result['secrets']:,} | {result['problems']:,} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
