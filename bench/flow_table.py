#!/usr/bin/env python3
"""CPU time of the flow table alone, fast path against reference path, on one benchmark capture.

    python3 bench/flow_table.py                          # bench/out/bench-200mb-seed1.pcap, 3 rounds
    python3 bench/flow_table.py --capture X.pcap --rounds 5

``run_bench.py`` times the whole command against tshark; on a shared 2-core machine its wall times move
by ±30 % between runs. This script isolates the part the fast path changes: every frame is read and
decoded once up front, then each variant feeds the same segments to a fresh ``ConnectionTables`` (TCP and
QUIC) in interleaved rounds, and the minimum process CPU time per variant is reported. The variants:

- ``fast, sealed key log``: what ``analyze`` does on pcap input without ``--keylog`` once it seals the
  key log (no key can ever arrive: protected records are not kept);
- ``fast, open key log``: a key log that may still grow (a followed file, pcapng secrets to come);
- ``reference``: ``Limits(fast_path=False)``.

Exit status 1 if the variants' events differ (they must be byte-identical).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helloscope.parsers.keylog import KeyLog  # noqa: E402
from helloscope.sniffer.capture.decode import Segment, decode  # noqa: E402
from helloscope.sniffer.capture.files import open_capture  # noqa: E402
from helloscope.sniffer.report.events import Observer, build_event, to_json_line  # noqa: E402
from helloscope.sniffer.report.model import ConnectionReport  # noqa: E402
from helloscope.sniffer.stats import RunStats  # noqa: E402
from helloscope.sniffer.transport.lifecycle import Limits  # noqa: E402
from helloscope.sniffer.transport.tables import ConnectionTables  # noqa: E402

TCP = 6
VARIANTS: dict[str, tuple[bool, bool]] = {  # name -> (fast_path, seal the key log)
    "fast, sealed key log": (True, True),
    "fast, open key log": (True, False),
    "reference": (False, False),
}


def run(segments: list[tuple[float, Segment]], fast: bool, seal: bool) -> tuple[float, list[ConnectionReport]]:
    """CPU seconds to feed every segment to a fresh table and flush it; the reports it made."""
    keys = KeyLog()
    if seal:
        keys.seal()
    reports: list[ConnectionReport] = []
    table = ConnectionTables(reports.append, RunStats(), Limits(fast_path=fast), keys=keys)
    feed = table.segment
    gc.collect()
    began = time.process_time()
    for timestamp, segment in segments:
        feed(timestamp, segment)
    table.flush()
    return time.process_time() - began, reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", type=Path, default=REPO / "bench" / "out" / "bench-200mb-seed1.pcap")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.capture.exists():
        parser.error(f"{args.capture}: no such file (python3 bench/run_bench.py makes it)")
    segments = [
        (timestamp, segment)
        for timestamp, linktype, frame in open_capture(str(args.capture))
        if (segment := decode(linktype, frame)) is not None
    ]
    gc.freeze()  # the decoded segments stay alive throughout: keep them out of every collection
    best = dict.fromkeys(VARIANTS, float("inf"))
    events: dict[str, str] = {}
    observer = Observer("bench")
    for _ in range(args.rounds):
        for name, (fast, seal) in VARIANTS.items():
            seconds, reports = run(segments, fast, seal)
            best[name] = min(best[name], seconds)
            events.setdefault(name, "".join(to_json_line(build_event(report, observer)) for report in reports))
    print(f"{args.capture.name}: {len(segments):,} TCP/UDP segments, {args.rounds} rounds, minimum CPU seconds\n")
    print("| flow table | CPU seconds | segments/s | ÷ reference |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in best.items():
        ratio = best["reference"] / seconds
        print(f"| {name} | {seconds:.2f} | {len(segments) / seconds:,.0f} | {ratio:.2f}× |")
    same = len(set(events.values())) == 1
    print(f"\nevents identical across variants: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
