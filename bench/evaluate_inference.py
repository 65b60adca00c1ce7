#!/usr/bin/env python3
"""Measure helloscope's keyless TLS 1.3 inference on a labelled corpus (bench/inference_corpus.py).

Every capture is analysed twice: with its key log (the decrypted report, checked against tshark's
labels) and without (the inference). For each stack pair the table gives how many connections there
were, how often the decrypted report agrees with tshark, how often an inference was made (coverage),
and how often it was right (precision), per field and per confidence level.

    python3 bench/evaluate_inference.py bench/out/inference            # Markdown table on stdout
    python3 bench/evaluate_inference.py bench/out/inference --json     # the numbers as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helloscope.parsers.keylog import KeyLog  # noqa: E402
from helloscope.sniffer.capture.files import open_capture  # noqa: E402
from helloscope.sniffer.report.events import Observer  # noqa: E402
from helloscope.sniffer.run.pipeline import analyze_files  # noqa: E402

FIELDS = ("certificate_request", "client_certificate", "outcome")
CONFIDENCES = ("high", "medium", "low")


@dataclass
class Tally:
    connections: int = 0
    decrypted_agree: int = 0
    inferred: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    correct: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    made: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    wrong: list[str] = field(default_factory=list)


def events_by_port(capture: Path, keylog: Path | None) -> dict[int, dict[str, Any]]:
    keys = KeyLog()
    if keylog is not None and keylog.exists():
        keys.feed(keylog.read_text())
        keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("bench"), keys=keys)
    return {event["source"]["port"]: event for event in events}


def findings(event: dict[str, Any]) -> dict[str, tuple[Any, str, str | None]]:
    """(value, evidence, confidence) of each evaluated field."""
    scope = event["helloscope"]
    request, certificate = scope["certificate_request"], scope["client_certificate"]
    return {
        "certificate_request": (request["seen"], request["evidence"], request.get("confidence")),
        "client_certificate": (certificate["state"], certificate["evidence"], certificate.get("confidence")),
        "outcome": (scope["outcome"], scope["outcome_evidence"], scope.get("outcome_confidence")),
    }


def tshark_truth(label: dict[str, Any]) -> dict[str, Any]:
    return {
        "certificate_request": label["certificate_request"],
        "client_certificate": label["client_certificate"],
        "server_alert": label["server_alert"],
    }


def decrypted_facts(event: dict[str, Any]) -> dict[str, Any]:
    """The decrypted report's answers to the questions tshark's labels answer."""
    scope = event["helloscope"]
    fatal = [alert["code"] for alert in scope["alerts"] if alert["sender"] == "server" and alert["level"] == "fatal"]
    return {
        "certificate_request": scope["certificate_request"]["seen"],
        "client_certificate": scope["client_certificate"]["state"],
        "server_alert": fatal[0] if fatal else None,
    }


def evaluate(corpus: Path) -> dict[str, Tally]:
    labels: dict[str, dict[str, Any]] = json.loads((corpus / "labels.json").read_text())
    labels = labels.get("connections", labels)
    tallies: dict[str, Tally] = defaultdict(Tally)
    by_capture: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, label in labels.items():
        by_capture[key.rsplit(":", 1)[0]].append(label)
    for capture_name, connection_labels in sorted(by_capture.items()):
        capture = corpus / capture_name
        keyed = events_by_port(capture, capture.with_suffix(".keylog"))
        plain = events_by_port(capture, None)
        for label in connection_labels:
            port = label["client_port"]
            stack = label["stack"]
            tally = tallies[f"{stack['server']} / {stack['client']}"]
            tally.connections += 1
            decrypted, inferred = keyed.get(port), plain.get(port)
            if decrypted is None or inferred is None or not label.get("decrypted_ok", True):
                tally.wrong.append(f"{capture_name}:{port} not reported or not decryptable")
                continue
            truth = {name: value for name, (value, _, _) in findings(decrypted).items()}
            if decrypted_facts(decrypted) == tshark_truth(label):
                tally.decrypted_agree += 1
            else:
                tally.wrong.append(
                    f"{capture_name}:{port} decrypted {decrypted_facts(decrypted)} != tshark {tshark_truth(label)}"
                )
            for name, (value, evidence, confidence) in findings(inferred).items():
                if evidence != "inferred" or confidence is None:
                    continue
                tally.inferred[name] += 1
                tally.made[(name, confidence)] += 1
                if value == truth[name]:
                    tally.correct[(name, confidence)] += 1
                else:
                    tally.wrong.append(
                        f"{capture_name}:{port} {name} inferred {value!r} ({confidence}) != {truth[name]!r}"
                    )
    return tallies


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def markdown(tallies: dict[str, Tally]) -> str:
    header = ["stack (server / client)", "connections", "decrypted = tshark"]
    for name in FIELDS:
        header += [f"{name} coverage", f"{name} precision high / medium / low"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stack, tally in sorted(tallies.items()):
        row = [stack, str(tally.connections), _percent(tally.decrypted_agree, tally.connections)]
        for name in FIELDS:
            row.append(_percent(tally.inferred[name], tally.connections))
            precision = [
                f"{_percent(tally.correct[(name, level)], tally.made[(name, level)])} ({tally.made[(name, level)]})"
                for level in CONFIDENCES
            ]
            row.append(" / ".join(precision))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="directory made by bench/inference_corpus.py")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    tallies = evaluate(args.corpus)
    if args.json:
        print(
            json.dumps(
                {
                    stack: {
                        "connections": t.connections,
                        "decrypted_agree": t.decrypted_agree,
                        "inferred": dict(t.inferred),
                        "made": {f"{f}:{c}": n for (f, c), n in t.made.items()},
                        "correct": {f"{f}:{c}": n for (f, c), n in t.correct.items()},
                        "wrong": t.wrong,
                    }
                    for stack, t in tallies.items()
                },
                indent=2,
            )
        )
    else:
        print(markdown(tallies))
        wrong = [line for tally in tallies.values() for line in tally.wrong]
        if wrong:
            print(f"\n{len(wrong)} disagreements:")
            print("\n".join(f"- {line}" for line in wrong[:60]))
    high_made = sum(t.made[(f, "high")] for t in tallies.values() for f in FIELDS)
    high_right = sum(t.correct[(f, "high")] for t in tallies.values() for f in FIELDS)
    print(f"\nhigh-confidence precision overall: {_percent(high_right, high_made)} of {high_made}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
