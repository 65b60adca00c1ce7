#!/usr/bin/env python3
"""Time helloscope against tshark on seeded benchmark captures; print a Markdown table per capture.

    python3 bench/run_bench.py                      # both profiles, 200 MB each, seed 1, in bench/out/
    python3 bench/run_bench.py --profile long --size-mb 50 --seed 2

Two captures are made by ``bench/make_capture.py`` (reused when they already exist): ``handshake``, the
handshake-heavy mix (about 58 packets per connection), and ``long``, connections as real links carry
them (about 500 packets on average, one in ten of 10,000 to 20,000). Each tool runs as a child process
on the same file, helloscope twice: with its compiled core and with ``HELLOSCOPE_PURE=1``. Its CPU time
(user + system), wall time and peak RSS come from the ``wait4`` rusage of that child; the ratio to
tshark is by CPU time, which a busy machine disturbs less than wall time. A bare ``dpkt.pcap.Reader``
loop that touches nothing is timed too: what any per-packet Python costs at the least. Then helloscope's
and tshark's ClientHellos are compared:

- TCP: the number of ClientHellos and the multiset of SNI values must be equal;
- QUIC: tshark follows QUIC connections by connection ID, and the generator replays each QUIC template
  with its own connection IDs, so tshark dissects the CRYPTO data of one replay per ID only. QUIC
  ClientHellos are therefore compared per original destination connection ID (set of IDs and SNIs).

Exit status 1 when the ClientHellos differ.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"

_TSHARK_FIELDS = (
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "udp.srcport",
    "quic.dcid",
    "tls.handshake.extensions_server_name",
)
_BARE_LOOP = "import dpkt,sys\nfor _ in dpkt.pcap.Reader(open(sys.argv[1], 'rb')): pass\n"


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    cpu_seconds: float
    max_rss_mb: float


def timed(name: str, argv: list[str], stdout: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` to completion; wall and CPU time and the child's own peak RSS (not the runner's)."""
    sink = open(stdout, "wb") if stdout is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        start = time.perf_counter()
        child = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.PIPE, cwd=REPO, env=None if env is None else {**os.environ, **env}
        )
        assert child.stderr is not None
        errors = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout is not None:
            sink.close()  # type: ignore[union-attr]
    if child.returncode != 0:
        raise SystemExit(f"{name} failed ({child.returncode}): {errors.decode(errors='replace')[-500:]}")
    return Run(name, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)  # Linux: kilobytes


def capture_for(size_mb: float, seed: int, profile: str) -> Path:
    suffix = "" if profile == "handshake" else f"-{profile}"
    path = OUT / f"bench-{size_mb:g}mb-seed{seed}{suffix}.pcap"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        subprocess.run(
            [
                sys.executable,
                str(HERE / "make_capture.py"),
                "--size-mb",
                str(size_mb),
                "--seed",
                str(seed),
                "--profile",
                profile,
                "-o",
                str(partial),
            ],
            check=True,
        )
        partial.rename(path)
    return path


def packet_count(path: Path) -> int:
    import dpkt

    with open(path, "rb") as fh:
        return sum(1 for _ in dpkt.pcap.Reader(fh))


Hellos = tuple[Counter[str | None], dict[str, str | None]]  # TCP SNI multiset, QUIC DCID → SNI


def helloscope_hellos(events: Path) -> Hellos:
    tcp: Counter[str | None] = Counter()
    quic: dict[str, str | None] = {}
    with open(events, encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            found = event["helloscope"]
            sni = event["tls"]["client"].get("server_name")
            if found["quic"] is not None:
                if found["client_hello"] is not None:
                    quic[found["quic"]["original_dcid"]] = sni
                continue
            tcp[sni] += (found["client_hello"] is not None) + (found["second_client_hello"] is not None)
    return +tcp, quic


def tshark_hellos(rows: Path) -> Hellos:
    tcp: Counter[str | None] = Counter()
    quic: dict[str, str | None] = {}
    with open(rows, encoding="utf-8") as fh:
        for line in fh:
            _, _, tcp_port, _, dcid, sni = line.rstrip("\n").split("\t")
            if tcp_port:
                tcp[sni or None] += 1
            else:
                # A datagram may hold several QUIC packets: the Initial's DCID comes first.
                quic[dcid.split(",")[0].replace(":", "")] = sni or None
    return tcp, quic


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    tshark = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {tshark}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", choices=("handshake", "long", "both"), default="both")
    ap.add_argument("--capture", type=Path, help="use this classic pcap instead of generating one")
    ap.add_argument("--skip-ceiling", action="store_true", help="do not time the bare dpkt loop")
    args = ap.parse_args()
    print(f"Machine: {machine()}\n")
    # An installed package carries its bytecode; a checkout compiles what changed at its first import,
    # and at every run where PYTHONDONTWRITEBYTECODE is set: compile once, so every run times analysis.
    for package in ("parsers", "sniffer"):
        compileall.compile_dir(REPO / package, quiet=1)
    if args.capture:
        compare(args.capture, args.skip_ceiling)
        return
    for profile in ("handshake", "long") if args.profile == "both" else (args.profile,):
        compare(capture_for(args.size_mb, args.seed, profile), args.skip_ceiling)


def compare(capture: Path, skip_ceiling: bool) -> None:
    packets = packet_count(capture)
    megabytes = capture.stat().st_size / 1e6
    events, rows = OUT / "bench-helloscope.jsonl", OUT / "bench-tshark.tsv"
    OUT.mkdir(exist_ok=True)
    analyze = [sys.executable, "-m", "helloscope.sniffer", "analyze", "-q", "-o", str(events), str(capture)]
    events.unlink(missing_ok=True)  # analyze -o appends
    runs = [timed("helloscope, pure Python (HELLOSCOPE_PURE=1)", analyze, env={"HELLOSCOPE_PURE": "1"})]
    events.unlink()  # the compiled core's events are the ones compared with tshark's below
    runs.insert(0, timed("helloscope", analyze))
    runs.append(
        timed(
            "tshark",
            # Out-of-order reassembly is off by default in tshark 4.0; without it reordered hellos are lost.
            [
                "tshark",
                "-n",
                "-o",
                "tcp.reassemble_out_of_order:TRUE",
                "-r",
                str(capture),
                "-Y",
                "tls.handshake.type == 1",
                "-T",
                "fields",
                "-E",
                "separator=/t",
                *(arg for field in _TSHARK_FIELDS for arg in ("-e", field)),
            ],
            stdout=rows,
        )
    )
    if not skip_ceiling:
        runs.append(timed("bare dpkt loop (ceiling)", [sys.executable, "-c", _BARE_LOOP, str(capture)]))

    tshark = next(run for run in runs if run.name == "tshark")
    print(f"Capture: `{capture.name}`, {packets:,} packets, {megabytes:,.0f} MB.\n")
    print("| tool | CPU s | wall s | packets/s (CPU) | peak RSS (MB) | ÷ tshark (CPU) | ÷ tshark (wall) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in runs:
        print(
            f"| {run.name} | {run.cpu_seconds:.2f} | {run.seconds:.2f} | {packets / run.cpu_seconds:,.0f} | "
            f"{run.max_rss_mb:.0f} | {tshark.cpu_seconds / run.cpu_seconds:.2f}× | "
            f"{tshark.seconds / run.seconds:.2f}× |"
        )

    ours_tcp, ours_quic = helloscope_hellos(events)
    theirs_tcp, theirs_quic = tshark_hellos(rows)
    same = ours_tcp == theirs_tcp and ours_quic == theirs_quic
    print(
        f"\nClientHellos: helloscope {sum(ours_tcp.values())} TCP + {len(ours_quic)} QUIC connection IDs, "
        f"tshark {sum(theirs_tcp.values())} TCP + {len(theirs_quic)} QUIC connection IDs: "
        + ("same counts and SNIs.\n" if same else "DIFFERENT.")
    )
    if not same:
        print(
            f"TCP SNIs only in helloscope: {dict(ours_tcp - theirs_tcp)}; only in tshark: {dict(theirs_tcp - ours_tcp)}"
        )
        print(f"QUIC IDs differing: {sorted(set(ours_quic.items()) ^ set(theirs_quic.items()))[:10]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
