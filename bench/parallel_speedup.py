"""analyze --workers N against one process on the same captures: wall time, and CPU seconds per process.

    .venv/bin/python bench/parallel_speedup.py bench/out/bench-200mb-seed1.pcap 2 5   # FILES (comma-separated) N ROUNDS

Both sides write every event as a JSON line to /dev/null and use a sealed empty key log (pcap input, no
--keylog), as ``helloscope analyze -q -o /dev/null`` does. "Expected on N free cores" is the speed-up when
nothing else runs on the machine: the one-process CPU time over the larger of the slowest worker's CPU
time and all CPU time (workers and parent) divided by N. Medians over the rounds.
"""

from __future__ import annotations

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
        table = ConnectionTables(
            lambda report: sink.write(to_json_line(build_event(report, observer))), stats, keys=keys
        )
        for path in paths:
            with open_capture(path) as reader:
                feed_capture(reader, table, stats)
        table.flush()
        return []

    def many() -> list[str]:
        notes: list[str] = []
        parallel.analyze_parallel(
            paths, workers, observer, lambda event: sink.write(to_json_line(event)), keys=keys, on_note=notes.append
        )
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
            started, cpu_started = time.perf_counter(), time.process_time()
            notes = run()
            wall[name].append(time.perf_counter() - started)
            cpu["one" if name == "one" else "parent"].append(time.process_time() - cpu_started)
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


if __name__ == "__main__":
    main()
