"""Everything a person reads: the per-connection table and the summary, with rich.

Values from the wire are shown through :func:`safe_text` only: control, format (bidi overrides) and
separator characters become visible escapes, and cells are built as ``rich.text.Text`` so that
``[red]`` in a server name is shown, never interpreted as markup.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
MAX_CELL = 64


def safe_text(value: object, limit: int = MAX_CELL) -> Text:
    """A wire value as inert terminal text: escaped, unstyled, and cut to ``limit`` characters."""
    if value is None:
        return Text("-", style="dim")
    text = str(value)
    shown = "".join(
        char if unicodedata.category(char) not in _HIDDEN_CATEGORIES else f"\\u{ord(char):04x}" for char in text
    )
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return Text(shown)


@dataclass(slots=True)
class Aggregate:
    """Counts over a group of connections: how many, how many advertised the flag, how they ended."""

    connections: int = 0
    flagged: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    flag_outcomes: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)

    def add(self, scope: Mapping[str, Any]) -> None:
        self.connections += 1
        self.flagged += scope["request_mtls"]
        self.outcomes[scope["outcome"]] += 1
        self.flag_outcomes[scope["flag_outcome"]] += 1
        self.findings.update(scope["client_certificate"].get("findings", ()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "flagged": self.flagged,
            "outcomes": dict(self.outcomes.most_common()),
            "flag_outcomes": dict(self.flag_outcomes.most_common()),
            "certificate_findings": dict(self.findings.most_common()),
        }


def _groups() -> defaultdict[str, Aggregate]:
    return defaultdict(Aggregate)


@dataclass(slots=True)
class Summary:
    """Aggregates over events (dicts as emitted), so stored JSON lines can be summarised the same way.

    Groups are keyed by client address, by JA4 (first ClientHello) and by server name; a connection
    without a parsed ClientHello or without SNI is counted in the totals only.
    """

    total: Aggregate = field(default_factory=Aggregate)
    outcome_pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_client: defaultdict[str, Aggregate] = field(default_factory=_groups)
    by_ja4: defaultdict[str, Aggregate] = field(default_factory=_groups)
    by_server_name: defaultdict[str, Aggregate] = field(default_factory=_groups)

    def add(self, event: Mapping[str, Any]) -> None:
        scope = event["helloscope"]
        client = event["tls"]["client"]
        self.total.add(scope)
        self.outcome_pairs[(scope["outcome"], scope["flag_outcome"])] += 1
        self.by_client[event["source"]["ip"]].add(scope)
        if client.get("ja4") is not None:
            self.by_ja4[client["ja4"]].add(scope)
        if client.get("server_name") is not None:
            self.by_server_name[client["server_name"]].add(scope)

    def as_dict(self) -> dict[str, Any]:
        """The same aggregates as the tables, as one JSON-ready document (``summary --json``)."""
        return {
            **self.total.as_dict(),
            "by_client": _ranked(self.by_client),
            "by_ja4": _ranked(self.by_ja4),
            "by_server_name": _ranked(self.by_server_name),
        }


def _ranked(groups: Mapping[str, Aggregate], limit: int | None = None) -> dict[str, dict[str, Any]]:
    """Groups with the most flagged connections first, then the busiest; ties by key for stable output."""
    order = sorted(groups.items(), key=lambda item: (-item[1].flagged, -item[1].connections, item[0]))
    return {key: aggregate.as_dict() for key, aggregate in order[:limit]}


def connections_table(events: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="TLS connections", header_style="bold")
    for column in (
        "start",
        "client",
        "server",
        "server name",
        "ver",
        "flag",
        "cert req",
        "client cert",
        "alerts",
        "outcome",
        "flag outcome",
    ):
        table.add_column(column, overflow="fold")
    for event in events:
        scope = event["helloscope"]
        alerts = ", ".join(_alert_text(alert) for alert in scope["alerts"])
        request = scope["certificate_request"]
        table.add_row(
            safe_text(event["@timestamp"][11:23]),
            safe_text(f"{event['source']['ip']}:{event['source']['port']}"),
            safe_text(f"{event['destination']['ip']}:{event['destination']['port']}"),
            safe_text(event["tls"]["client"].get("server_name")),
            safe_text(event["tls"]["version"]),
            safe_text("80" if scope["request_mtls"] else ""),
            safe_text(_with_evidence(request["seen"], request["evidence"])),
            safe_text(_with_evidence(scope["client_certificate"]["state"], scope["client_certificate"]["evidence"])),
            safe_text(alerts),
            safe_text(_with_evidence(scope["outcome"], scope["outcome_evidence"])),
            safe_text(_with_evidence(scope["flag_outcome"], scope["flag_outcome_evidence"])),
        )
    return table


def _alert_text(alert: Mapping[str, Any]) -> str:
    if alert["evidence"] == "inferred":
        return f"{alert['sender']}:alert? (inferred)"
    return f"{alert['sender']}:{alert['description'] or 'encrypted'}"


def _with_evidence(value: object, evidence: str) -> str:
    """A finding as a person reads it; anything not seen in clear says how it was learned."""
    if value is None:
        return "unknown"
    shown = {True: "yes", False: "no"}.get(value, value) if isinstance(value, bool) else value
    return f"{shown} ({evidence})" if evidence not in ("plaintext", "unknown") else str(shown)


TOP_GROUPS = 10
_ANSWERS = ("honored", "ignored", "unsolicited")


# Counters only a live capture can move: a file analysis would show them as noise zeros.
_LIVE_ONLY = frozenset({"kernel_received", "kernel_dropped", "handshake_packets_written", "handshake_flows_dropped"})


def print_summary(console: Console, summary: Summary, stats: Mapping[str, int] | None = None) -> None:
    outcomes = Table(title=f"{summary.total.connections} TLS connections by outcome", header_style="bold")
    outcomes.add_column("outcome")
    outcomes.add_column("flag outcome")
    outcomes.add_column("connections", justify="right")
    for (outcome, flag_outcome), count in sorted(summary.outcome_pairs.items(), key=lambda item: (-item[1], item[0])):
        outcomes.add_row(safe_text(outcome), safe_text(flag_outcome), str(count))
    console.print(outcomes)

    flagged = f"{summary.total.flagged} of {summary.total.connections} connections advertise request-mTLS"
    for title, groups, heading in (
        (f"Top clients advertising request-mTLS, by client address ({flagged})", summary.by_client, "client"),
        ("By JA4", summary.by_ja4, "ja4"),
        ("By server name", summary.by_server_name, "server name"),
    ):
        if groups:
            console.print(_group_table(title, heading, groups))

    if summary.total.findings:
        findings = Table(title="Client cert findings", header_style="bold")
        findings.add_column("finding")
        findings.add_column("connections", justify="right")
        for code, count in summary.total.findings.most_common():
            findings.add_row(safe_text(code), str(count))
        console.print(findings)

    if stats:
        run = Table(title="Run statistics", header_style="bold", show_header=False)
        run.add_column("counter")
        run.add_column("value", justify="right")
        for name, value in stats.items():
            if not value and name in _LIVE_ONLY:
                continue
            run.add_row(name.replace("_", " "), str(value), style="yellow" if value and _is_warning(name) else None)
        console.print(run)


def _group_table(title: str, heading: str, groups: Mapping[str, Aggregate]) -> Table:
    shown = _ranked(groups, TOP_GROUPS)
    more = len(groups) - len(shown)
    table = Table(title=title + (f", top {len(shown)} of {len(groups)}" if more else ""), header_style="bold")
    table.add_column(heading, overflow="fold")
    for column in ("connections", "flag", *_ANSWERS):
        table.add_column(column, justify="right")
    table.add_column("outcomes")
    table.add_column("cert findings")
    for key, counts in shown.items():
        table.add_row(
            safe_text(key),
            str(counts["connections"]),
            str(counts["flagged"]),
            *(str(counts["flag_outcomes"].get(answer, 0)) for answer in _ANSWERS),
            safe_text(_counts_text(counts["outcomes"]), limit=MAX_CELL * 2),
            safe_text(_counts_text(counts["certificate_findings"]), limit=MAX_CELL * 2),
        )
    return table


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _is_warning(counter: str) -> bool:
    return counter in {
        "truncated_files",
        "flow_cap_evictions",
        "stream_byte_cap_hits",
        "overlap_conflicts",
        "stream_gaps",
    }
