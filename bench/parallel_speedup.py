"""analyze --workers N against one process on the same captures: wall time, and CPU seconds per process.

    .venv/bin/python bench/parallel_speedup.py bench/out/bench-200mb-seed1.pcap 2 5   # FILES (comma-separated) N ROUNDS

Both sides count every event in a summary, write it as a JSON line to /dev/null and use a sealed empty
key log (pcap input, no --keylog), as ``helloscope analyze -q -o /dev/null`` does: with workers, they
make the lines and summaries and the parent writes the lines and merges the summaries. "Expected on N
free cores" is the speed-up when nothing else runs on the machine: the one-process CPU time over the
larger of the slowest worker's CPU time and all CPU time (workers and parent) divided by N. Medians over
the rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helloscope.parsers.keylog import KeyLog  # noqa: E402
from helloscope.sniffer.capture.files import open_capture  # noqa: E402
from helloscope.sniffer.report.events import Observer, build_event, to_json_line  # noqa: E402
from helloscope.sniffer.report.model import ConnectionReport  # noqa: E402
from helloscope.sniffer.report.summary import Summary  # noqa: E402
from helloscope.sniffer.run import parallel  # noqa: E402
from helloscope.sniffer.run.pipeline import feed_capture  # noqa: E402
from helloscope.sniffer.stats import RunStats  # noqa: E402
from helloscope.sniffer.transport.tables import ConnectionTables  # noqa: E402


def main() -> None:
    paths, workers, rounds = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
    observer = Observer("bench")
    sink = open(os.devnull, "w")  # noqa: SIM115 (for the whole run)
    keys = KeyLog()
    keys.seal()

    def one() -> list[str]:
        stats = RunStats()
        summary = Summary()

        def deliver(report: ConnectionReport) -> None:
            event = build_event(report, observer)
            summary.add(event)
            sink.write(to_json_line(event))

        table = ConnectionTables(deliver, stats, keys=keys)
        for path in paths:
            with open_capture(path) as reader:
                feed_capture(reader, table, stats)
        table.flush()
        return []

    def many() -> list[str]:
        notes: list[str] = []
        outcome = parallel.analyze_parallel(
            paths, workers, observer, sink.write, keys=keys, on_note=notes.append, lines=to_json_line
        )
        assert outcome.summary is not None
        Summary().merge(outcome.summary)
        return notes

    analyze = parallel._analyze

    def timed(worker: parallel.Worker, *args: object, **kwargs: object) -> None:
        """Each worker reports its own CPU seconds as a note."""
        start = time.process_time()
        try:
            analyze(worker, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            worker.note(f"cpu {time.process_time() - start:.3f}")

    parallel._analyze = timed  # type: ignore[assignment]
    wall: dict[str, list[float]] = {"one": [], "many": []}
    cpu: dict[str, list[float]] = {"one": [], "parent": [], "slowest worker": [], "bound": []}
    runs: tuple[tuple[str, Callable[[], list[str]]], ...] = (("one", one), ("many", many))
    for _ in range(rounds):
        for name, run in runs:
            started = time.perf_counter()
            notes, seconds_used = _fresh(run)
            wall[name].append(time.perf_counter() - started)
            cpu["one" if name == "one" else "parent"].append(seconds_used)
            if notes:
                seconds = [float(note.split()[1]) for note in notes]
                cpu["slowest worker"].append(max(seconds))
                # on N free cores a run takes at least its slowest worker, and at least all CPU work / N
                cpu["bound"].append(max(max(seconds), (sum(seconds) + cpu["parent"][-1]) / workers))
        print(
            f"load {os.getloadavg()[0]:.1f}: wall 1 process {wall['one'][-1]:.2f} s, "
            f"{workers} workers {wall['many'][-1]:.2f} s (CPU: 1 process {cpu['one'][-1]:.2f} s, "
            f"workers {', '.join(f'{seconds:.2f}' for seconds in seconds)} s)"
        )
    w = {name: statistics.median(values) for name, values in wall.items()}
    c = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"wall median: 1 process {w['one']:.2f} s, {workers} workers {w['many']:.2f} s: {w['one'] / w['many']:.2f}x")
    print(
        f"CPU median: 1 process {c['one']:.2f} s; slowest worker {c['slowest worker']:.2f} s, "
        f"parent {c['parent']:.2f} s: {c['one'] / c['bound']:.2f}x expected on {workers} free cores"
    )


def _fresh(run: Callable[[], list[str]]) -> tuple[list[str], float]:
    """``run``'s notes and CPU seconds, run in a child forked for it: as a new process would, it fills its
    caches and loads what it imports lazily itself, and so do the workers it forks (else they would
    inherit what an earlier round of this process had filled and loaded)."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(readable)
        started = time.process_time()
        notes = run()
        os.write(writable, json.dumps([notes, time.process_time() - started]).encode())
        os._exit(0)
    os.close(writable)
    with os.fdopen(readable, "rb") as results:
        notes, seconds = json.loads(results.read())
    os.waitpid(pid, 0)
    return notes, seconds


if __name__ == "__main__":
    main()
