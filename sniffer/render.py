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
class Summary:
    """Aggregates over events (dicts as emitted), so stored JSON lines can be summarised the same way."""

    connections: int = 0
    flagged: int = 0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    flagged_clients: Counter[str] = field(default_factory=Counter)
    flagged_client_names: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, event: Mapping[str, Any]) -> None:
        scope = event["helloscope"]
        self.connections += 1
        self.outcomes[(scope["outcome"], scope["flag_outcome"])] += 1
        if scope["request_mtls"]:
            self.flagged += 1
            client = event["source"]["ip"]
            self.flagged_clients[client] += 1
            server_name = event["tls"]["client"].get("server_name")
            if server_name is not None:
                self.flagged_client_names[client][server_name] += 1


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


def print_summary(console: Console, summary: Summary, stats: Mapping[str, int] | None = None) -> None:
    outcomes = Table(title=f"{summary.connections} TLS connections by outcome", header_style="bold")
    outcomes.add_column("outcome")
    outcomes.add_column("flag outcome")
    outcomes.add_column("connections", justify="right")
    for (outcome, flag_outcome), count in sorted(summary.outcomes.items(), key=lambda item: (-item[1], item[0])):
        outcomes.add_row(safe_text(outcome), safe_text(flag_outcome), str(count))
    console.print(outcomes)

    if summary.flagged_clients:
        clients = Table(
            title=f"Top clients advertising request-mTLS ({summary.flagged} connections)", header_style="bold"
        )
        clients.add_column("client")
        clients.add_column("connections", justify="right")
        clients.add_column("server names")
        for client, count in summary.flagged_clients.most_common(10):
            names = ", ".join(name for name, _ in summary.flagged_client_names[client].most_common(3))
            clients.add_row(safe_text(client), str(count), safe_text(names))
        console.print(clients)

    if stats:
        run = Table(title="Run statistics", header_style="bold", show_header=False)
        run.add_column("counter")
        run.add_column("value", justify="right")
        for name, value in stats.items():
            run.add_row(name.replace("_", " "), str(value), style="yellow" if value and _is_warning(name) else None)
        console.print(run)


def _is_warning(counter: str) -> bool:
    return counter in {
        "truncated_files",
        "flow_cap_evictions",
        "stream_byte_cap_hits",
        "overlap_conflicts",
        "stream_gaps",
    }
