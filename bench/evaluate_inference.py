#!/usr/bin/env python3
"""Measure helloscope's keyless TLS 1.3 inference on labelled corpora (bench/inference_corpus.py).

Every capture is analysed twice: with its key log (the decrypted report, checked against tshark's
labels) and without (the inference). The truth is tshark's, never helloscope's: the CertificateRequest
and the client Certificate as tshark decrypted them, and the outcome derived from tshark's labels by the
report's own rule (a server rejection alert after a certificate flight: ``rejected``; any other fatal
alert, from either side: ``failed``; no CertificateRequest or a resumption: ``not_requested``; otherwise
``authenticated`` / ``declined`` when the server went on after the client's Finished; ``None``, not
judged, when the server sent nothing at all after it).

The tables give, per field, coverage (answers / connections) and precision per confidence level
(right / answers at that level), overall, per stack (a connection counts for its server stack and for its
client stack) and **leave-one-stack-out**: a stack's connections judged with a calibration table fitted
without any connection that stack took part in (see ``fit_table``). The sizes and patterns the rules
read are protocol facts written by hand (``sniffer/handshake/inference.py``); which confidence a pattern
earns, and which value it gives, is the fitted part.

    python3 bench/evaluate_inference.py bench/out/c1 bench/out/c2 ...      # Markdown tables on stdout
    python3 bench/evaluate_inference.py DIRS --json rows.json             # per-connection rows as JSON
    python3 bench/evaluate_inference.py DIRS --fit                        # print the fitted table
    python3 bench/evaluate_inference.py DIRS --write-table                # ... into sniffer/handshake/inference.py
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helloscope.parsers.keylog import KeyLog  # noqa: E402
from helloscope.parsers.registry import CERTIFICATE_REJECTION_ALERTS  # noqa: E402
from helloscope.sniffer.capture.files import open_capture  # noqa: E402
from helloscope.sniffer.handshake import inference  # noqa: E402
from helloscope.sniffer.report.events import Observer  # noqa: E402
from helloscope.sniffer.run.pipeline import analyze_files  # noqa: E402

FIELDS = ("certificate_request", "client_certificate", "outcome")
CONFIDENCES = ("high", "medium", "low")
# The stacks the rules in sniffer/handshake/inference.py were written from (hand-written constants and
# patterns); the confidence table, where there is one, is refitted per held-out stack.
RULE_STACKS = ("openssl", "python", "scapy", "tlslite")


def events_by_port(capture: Path, keylog: Path | None) -> dict[int, dict[str, Any]]:
    keys = KeyLog()
    if keylog is not None and keylog.exists():
        keys.feed(keylog.read_text())
        keys.finish()
    events, _ = analyze_files([open_capture(str(capture))], Observer("bench"), keys=keys)
    return {event["source"]["port"]: event for event in events}


def findings(event: dict[str, Any]) -> dict[str, tuple[Any, str, str | None, str | None]]:
    """(value, evidence, confidence, basis) of each evaluated field."""
    scope = event["helloscope"]
    request, certificate = scope["certificate_request"], scope["client_certificate"]
    return {
        "certificate_request": (request["seen"], request["evidence"], request.get("confidence"), request.get("basis")),
        "client_certificate": (
            certificate["state"],
            certificate["evidence"],
            certificate.get("confidence"),
            certificate.get("basis"),
        ),
        "outcome": (
            scope["outcome"],
            scope["outcome_evidence"],
            scope.get("outcome_confidence"),
            scope.get("outcome_basis"),
        ),
    }


def first_fatal(label: dict[str, Any]) -> tuple[str, int] | None:
    """(sender, description) of the first fatal alert in the decrypted sequence."""
    for item in label["decrypted"]:
        direction, _, rest = item.partition(" ")
        if rest.startswith("Alert(2,"):
            return direction, int(rest[len("Alert(2,") :].split(")")[0])
    return None


def client_certificate_label(label: dict[str, Any]) -> str | None:
    """tshark's client certificate; None when the client never finished its flight (it aborted)."""
    if label["client_certificate"] == "absent" and not label["client_finished"]:
        return None
    return label["client_certificate"]


def tshark_truth(label: dict[str, Any]) -> dict[str, Any]:
    request, certificate = label["certificate_request"], client_certificate_label(label)
    fatal = first_fatal(label)
    if label["resumed"]:
        request = False
    if (
        fatal
        and fatal[0] == "s"
        and fatal[1] in CERTIFICATE_REJECTION_ALERTS
        and request
        and certificate in ("empty", "presented")
    ):
        outcome: str | None = "rejected"
    elif fatal:
        outcome = "failed"
    elif not request:
        outcome = "not_requested"
    else:
        after = label.get("flights", {}).get("server_after_client_flight", [])
        went_on = bool(after) and label["client_finished"]
        outcome = ("authenticated" if certificate == "presented" else "declined") if went_on else None
    return {"certificate_request": request, "client_certificate": certificate, "outcome": outcome}


def decrypted_facts(event: dict[str, Any]) -> dict[str, Any]:
    scope = event["helloscope"]
    fatal = [alert["code"] for alert in scope["alerts"] if alert["sender"] == "server" and alert["level"] == "fatal"]
    return {
        "certificate_request": scope["certificate_request"]["seen"],
        "client_certificate": scope["client_certificate"]["state"],
        "server_alert": fatal[0] if fatal else None,
    }


def label_facts(label: dict[str, Any]) -> dict[str, Any]:
    return {
        "certificate_request": label["certificate_request"],
        "client_certificate": client_certificate_label(label),
        "server_alert": label["server_alert"],
    }


def collect(corpora: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per labelled connection: stacks, truth, decrypted agreement, inferred answers."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    # Every pattern reported, so that the table can be refitted from the reports (see inference.py).
    inference.UNCALIBRATED = True
    for corpus in corpora:
        labels: dict[str, Any] = json.loads((corpus / "labels.json").read_text())
        connections = labels.get("connections", labels)
        by_capture: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for label in connections.values():
            by_capture[label["capture"]].append(label)
        for capture_name, connection_labels in sorted(by_capture.items()):
            capture = corpus / capture_name
            keyed = events_by_port(capture, capture.with_suffix(".keylog"))
            plain = events_by_port(capture, None)
            for label in connection_labels:
                port = label["client_port"]
                where = f"{corpus.name}/{capture_name}:{port}"
                decrypted, inferred = keyed.get(port), plain.get(port)
                if decrypted is None or inferred is None or not label.get("decrypted_ok", True):
                    problems.append(f"{where} not reported or not decryptable")
                    continue
                agree = decrypted_facts(decrypted) == label_facts(label)
                if not agree:
                    problems.append(f"{where} decrypted {decrypted_facts(decrypted)} != tshark {label_facts(label)}")
                answers = {}
                for name, (value, evidence, confidence, basis) in findings(inferred).items():
                    if evidence == "inferred" and confidence is not None:
                        answers[name] = {"value": value, "confidence": confidence, "basis": basis}
                rows.append(
                    {
                        "where": where,
                        "server": label["stack"]["server"],
                        "client": label["stack"]["client"],
                        "variant": label.get("variant"),
                        "truth": tshark_truth(label),
                        "decrypted_agree": agree,
                        "answers": answers,
                    }
                )
    return rows, problems


# ----- calibration -------------------------------------------------------------------------------


def pattern(answer: dict[str, Any]) -> list[str] | None:
    """The pattern keys, finest first, the rules put in an answer's basis (``pattern=K1~K2~...``), if any."""
    for part in (answer.get("basis") or "").split(";"):
        if part.startswith("pattern="):
            return part[len("pattern=") :].split("~")
    return None


def fit_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, tuple[Any, str]]]:
    """Per field and pattern: the value most often true and the confidence it earned on these rows.

    ``high`` needs every answer right, at least 20 of them and at least 3 stacks (server or client) seen
    with it; ``medium`` 97 % right, at least 10 answers and 3 stacks; ``low`` 75 %. Anything else is
    left out of the table (no answer). ``inference.max_confidence`` caps what ambiguous patterns (padded
    records, an unknown server padding, an unrecognised flight) can earn, whatever the corpus says.
    """
    seen: dict[tuple[str, str], list[tuple[Any, str, str]]] = defaultdict(list)
    for row in rows:
        for name, answer in row["answers"].items():
            keys = pattern(answer)
            if keys is None or row["truth"][name] is None:
                continue
            for key in keys:
                seen[(name, key)].append((row["truth"][name], row["server"], row["client"]))
    table: dict[str, dict[str, tuple[Any, str]]] = defaultdict(dict)
    for (name, key), items in sorted(seen.items()):
        counts = collections.Counter(json.dumps(value) for value, _, _ in items)
        best, right = counts.most_common(1)[0]
        n = len(items)
        stacks = {s for _, server, client in items for s in (server, client)}
        share = right / n
        cap = inference.max_confidence(name, key)
        if cap is None:
            continue  # never answered: its coarser keys share the same unanswerable flight
        if share == 1.0 and n >= 20 and len(stacks) >= 3 and cap == "high":
            level = "high"
        elif share >= 0.97 and n >= 10 and len(stacks) >= 3 and cap in ("high", "medium"):
            level = "medium"
        elif share >= 0.75:
            level = "low"
        elif n >= 4:
            # Seen often enough and mixed: an explicit "no answer", so that a coarser key (which ignores
            # what made this one ambiguous, e.g. the client's close_notify crossing the server's alert)
            # is not consulted instead.
            table[name][key] = (None, None)
            continue
        else:
            continue
        table[name][key] = (json.loads(best), level)
    return table


def apply_table(rows: list[dict[str, Any]], table: dict[str, dict[str, tuple[Any, str]]]) -> list[dict[str, Any]]:
    """The rows' answers re-judged with ``table`` (answers without a pattern are kept as they are)."""
    out = []
    for row in rows:
        answers = {}
        for name, answer in row["answers"].items():
            keys = pattern(answer)
            if keys is None:
                answers[name] = answer
                continue
            judged = inference.judge(name, keys, table.get(name, {}))
            if judged is not None:
                position, value, level = judged
                answers[name] = {**answer, "value": value, "confidence": str(level), "key": keys[position]}
        out.append({**row, "answers": answers})
    return out


CALIBRATION_HEADER = "CALIBRATION: Final[dict[str, dict[str, tuple[object, str | None]]]] = {"


def table_source(table: dict[str, dict[str, tuple[Any, str]]]) -> str:
    lines = [CALIBRATION_HEADER]
    for name in FIELDS:
        lines.append(f"    {name!r}: {{")
        for key, (value, level) in sorted(table.get(name, {}).items()):
            lines.append(f"        {key!r}: ({value!r}, {level!r}),")
        lines.append("    },")
    return "\n".join(lines) + "\n}\n"


# ----- tallies -----------------------------------------------------------------------------------


@dataclass
class Tally:
    connections: int = 0
    decrypted_agree: int = 0
    judged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    answered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    made: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    correct: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    wrong: list[str] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        self.connections += 1
        self.decrypted_agree += row["decrypted_agree"]
        for name in FIELDS:
            truth = row["truth"][name]
            if truth is None:
                continue
            self.judged[name] += 1
            answer = row["answers"].get(name)
            if answer is None:
                continue
            self.answered[name] += 1
            level = answer["confidence"]
            self.made[(name, level)] += 1
            if answer["value"] == truth:
                self.correct[(name, level)] += 1
            else:
                self.wrong.append(
                    f"{row['where']} {name} inferred {answer['value']!r} ({level}; {answer.get('basis')}) != {truth!r}"
                )


def tally(rows: list[dict[str, Any]], key: Any) -> dict[str, Tally]:
    out: dict[str, Tally] = defaultdict(Tally)
    for row in rows:
        for group in key(row):
            out[group].add(row)
    return out


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def markdown(tallies: dict[str, Tally], title: str, fields: tuple[str, ...] = FIELDS) -> str:
    header = [title, "connections", "decrypted = tshark"]
    for name in fields:
        header += [f"{name} coverage", f"{name} precision high / medium / low (answers)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, t in tallies.items():
        row = [group, str(t.connections), _percent(t.decrypted_agree, t.connections)]
        for name in fields:
            row.append(_percent(t.answered[name], t.judged[name]))
            row.append(
                " / ".join(
                    f"{_percent(t.correct[(name, level)], t.made[(name, level)])} ({t.made[(name, level)]})"
                    for level in CONFIDENCES
                )
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def stacks_of(row: dict[str, Any]) -> list[str]:
    return sorted({row["server"], row["client"]})


def leave_one_out(rows: list[dict[str, Any]]) -> tuple[dict[str, Tally], bool]:
    """Per stack: its connections judged with a table fitted without it (if the rules use one)."""
    fitted = any(pattern(answer) for row in rows for answer in row["answers"].values())
    out: dict[str, Tally] = {}
    for stack in sorted({s for row in rows for s in stacks_of(row)}):
        held = [row for row in rows if stack in stacks_of(row)]
        if fitted:
            train = [row for row in rows if stack not in stacks_of(row)]
            held = apply_table(held, fit_table(train))
        elif stack in RULE_STACKS:
            continue  # hand-written from this stack: not a held-out measurement
        out[stack] = tally(held, lambda row: ["all"])["all"]
    return out, fitted


def report(rows: list[dict[str, Any]], problems: list[str]) -> str:
    fitted = any(pattern(answer) for row in rows for answer in row["answers"].values())
    # The table shipped in inference.py (what helloscope answers), not a refit.
    judged = apply_table(rows, getattr(inference, "CALIBRATION", {})) if fitted else rows
    overall = tally(judged, lambda row: ["all"])
    per_stack = dict(sorted(tally(judged, stacks_of).items()))
    loso, _ = leave_one_out(rows)
    loso_all = Tally()
    held_rows = []
    for stack in loso:
        held = [row for row in rows if stack in stacks_of(row)]
        if fitted:
            held = apply_table(held, fit_table([row for row in rows if stack not in stacks_of(row)]))
        held_rows += held
    for row in held_rows:
        loso_all.add(row)
    parts = [
        "## Overall" + (" (the calibration table in sniffer/handshake/inference.py)" if fitted else ""),
        "",
        markdown(overall, "corpus"),
        "",
        "## Per stack (a connection counts for its server and its client stack)",
        "",
        markdown(per_stack, "stack"),
        "",
        "## Leave one stack out",
        "",
        (
            "Each stack's connections judged with the calibration table refitted without any connection of that "
            "stack. The last row pools the held-out judgements (a connection appears once per stack it involves)."
            if fitted
            else "The rules are hand-written constants from the stacks "
            + ", ".join(RULE_STACKS)
            + ": the per-stack numbers on every other stack are held-out numbers (listed here)."
        ),
        "",
        markdown({**loso, "all held-out": loso_all}, "held-out stack"),
    ]
    wrong = [line for t in overall.values() for line in t.wrong]
    if problems:
        parts += ["", f"{len(problems)} connections not evaluated or decrypted != tshark:", ""]
        parts += [f"- {line}" for line in problems[:40]]
    if wrong:
        parts += ["", f"{len(wrong)} wrong answers (first 80):", ""]
        parts += [f"- {line}" for line in wrong[:80]]
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, nargs="+", help="directories made by bench/inference_corpus.py")
    parser.add_argument("--json", type=Path, help="write the per-connection rows here")
    parser.add_argument("--rows", type=Path, help="read rows written by --json instead of analysing the captures")
    parser.add_argument("--fit", action="store_true", help="print the calibration table fitted on every connection")
    parser.add_argument(
        "--write-table",
        action="store_true",
        help="write that table into sniffer/handshake/inference.py (CALIBRATION), replacing the one there",
    )
    args = parser.parse_args()
    print(f"rules: {inference.__file__}", file=sys.stderr)
    if args.rows:
        data = json.loads(args.rows.read_text())
        rows, problems = data["rows"], data["problems"]
    else:
        rows, problems = collect(args.corpus)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "problems": problems}))
    if args.fit or args.write_table:
        text = table_source(fit_table(rows))
        if args.write_table:
            target = REPO / "sniffer" / "handshake" / "inference.py"
            source = target.read_text()
            start = source.index(CALIBRATION_HEADER)
            end = source.index("\n}\n", start) + 3
            target.write_text(source[:start] + text + source[end:])
            print(f"wrote the table into {target}", file=sys.stderr)
        else:
            print(text, end="")
        return 0
    print(report(rows, problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
