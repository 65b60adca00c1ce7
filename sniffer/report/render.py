"""Everything a person reads: the per-connection table and lines, and the summary, with rich.

A table is drawn only when every column fits the console with no address, number or word split over
lines and no header cut; otherwise each row becomes a block (its leading cells, then ``header value``
items packed into lines), which reads at 80 columns.

Values from the wire are shown through :func:`safe_text` only: control, format (bidi overrides) and
separator characters become visible escapes, and cells are built as ``rich.text.Text`` so that
``[red]`` in a server name is shown, never interpreted as markup.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from helloscope.sniffer.report.summary import (
    FLAG_ANSWERS,
    TOP_GROUPS,
    Aggregate,
    Summary,
    address,
    by_count,
    lookup,
    ranked_items,
)
from rich import box
from rich.cells import cell_len
from rich.console import Console, JustifyMethod
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


class Grid:
    """Rows under headers: a table where it fits the console, else one block per row.

    ``atoms`` are the columns never broken over lines (addresses, times, counts); the first ``lead``
    columns open each block, the others follow as ``header value`` items.
    """

    def __init__(self, title: str, headers: Sequence[str], *, atoms: Iterable[str] = (), lead: int = 1) -> None:
        self.title = title
        self.headers = tuple(headers)
        self.atoms = frozenset(atoms)
        self.lead = lead
        self.rows: list[tuple[Text, ...]] = []

    def add_row(self, *cells: Text | str) -> None:
        self.rows.append(tuple(cell if isinstance(cell, Text) else Text(cell) for cell in cells))

    def _min_widths(self) -> list[int]:
        """Per column, the narrowest width that splits nothing: its longest word (header included), or
        its longest cell for an atom."""
        widths = []
        for index, header in enumerate(self.headers):
            cells = [row[index].plain for row in self.rows]
            if header in self.atoms:
                pieces = [*header.split(), *cells]
            else:
                pieces = [word for text in (header, *cells) for word in text.split()]
            widths.append(max((cell_len(piece) for piece in pieces), default=1))
        return widths

    def table(self, widths: Sequence[int]) -> Table:
        table = Table(title=self.title, header_style="bold", box=box.SIMPLE_HEAD, title_justify="left")
        for header, width in zip(self.headers, widths, strict=True):
            atom = header in self.atoms
            count = atom and header not in self.headers[: self.lead]
            justify: JustifyMethod = "right" if count else "left"
            table.add_column(header, no_wrap=atom, justify=justify, min_width=width, overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        return table

    def print(self, console: Console) -> None:
        widths = self._min_widths()
        # each column is padded by one space on either side, plus the table's edge
        if sum(widths) + 3 * len(widths) + 1 <= console.width:
            console.print(self.table(widths))
            return
        console.print(Text(self.title, style="bold"))
        for row in self.rows:
            for line in _blocks(row, self.headers, self.lead, console.width):
                console.print(line, overflow="fold")
        console.print()


def _blocks(row: Sequence[Text], headers: Sequence[str], lead: int, width: int) -> list[Text]:
    """One row as lines: its leading cells, then its items packed without splitting any of them."""
    lines = [Text("  ").join(row[:lead])]
    current = Text("  ")
    for header, cell in zip(headers[lead:], row[lead:], strict=True):
        item = Text.assemble((header, "dim"), " ", cell)
        if current.cell_len > 2 and current.cell_len + 3 + item.cell_len > width:
            lines.append(current)
            current = Text("  ")
        current.append_text(Text(" · ") if current.cell_len > 2 else Text()).append_text(item)
    if current.cell_len > 2:
        lines.append(current)
    return lines


def connections_table(events: Iterable[Mapping[str, Any]]) -> Grid:
    grid = Grid(
        "TLS connections",
        (
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
        ),
        atoms=("start", "client", "server", "ver", "flag"),
        lead=4,
    )
    for event in events:
        scope = event["helloscope"]
        alerts = ", ".join(_alert_text(alert) for alert in scope["alerts"])
        request = scope["certificate_request"]
        grid.add_row(
            safe_text(event["@timestamp"][11:23]),
            safe_text(address(event["source"]["ip"], event["source"]["port"])),
            safe_text(address(event["destination"]["ip"], event["destination"]["port"])),
            safe_text(event["tls"]["client"].get("server_name")),
            safe_text(event["tls"]["version"]),
            safe_text("80" if scope["request_mtls"] else "-"),
            safe_text(_with_evidence(request["seen"], request["evidence"])),
            safe_text(_with_evidence(scope["client_certificate"]["state"], scope["client_certificate"]["evidence"])),
            safe_text(alerts or "-"),
            safe_text(_with_evidence(scope["outcome"], scope["outcome_evidence"])),
            safe_text(_with_evidence(scope["flag_outcome"], scope["flag_outcome_evidence"])),
        )
    return grid


def connection_line(event: Mapping[str, Any], arrow: str = "→") -> Text:
    """One connection on one line, as tcpdump prints a packet: when, who to whom, SNI, flag, outcome."""
    scope = event["helloscope"]
    version = lookup(event, "tls.version")
    flag = "flag 80" if scope["request_mtls"] else "no flag"
    return Text(" ").join(
        (
            safe_text(event["@timestamp"][11:23]),
            safe_text(address(event["source"]["ip"], event["source"]["port"])),
            Text(arrow),
            safe_text(address(event["destination"]["ip"], event["destination"]["port"])),
            safe_text(f"{event['network']['protocol']}{'' if version is None else ' ' + str(version)}"),
            Text("sni", style="dim"),
            safe_text(event["tls"]["client"].get("server_name")),
            Text(f"{flag}:", style="dim"),
            safe_text(_with_evidence(scope["flag_outcome"], scope["flag_outcome_evidence"])),
            Text("outcome", style="dim"),
            safe_text(scope["outcome"], limit=32),
            safe_text(f"({scope['outcome_evidence']})"),
        )
    )


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


_COUNTS = ("connections", "flag", *FLAG_ANSWERS)

# Counters only a live capture can move: a file analysis would show them as noise zeros.
_LIVE_ONLY = frozenset({"kernel_received", "kernel_dropped", "handshake_packets_written", "handshake_flows_dropped"})


def print_summary(
    console: Console, summary: Summary, stats: Mapping[str, int] | None = None, top: int = TOP_GROUPS
) -> None:
    total = summary.total
    outcomes = Grid(
        f"{total.connections} TLS connections by outcome",
        ("outcome", "flag outcome", "connections"),
        atoms=("connections",),
    )
    for (outcome, flag_outcome), count in sorted(
        summary.outcome_pairs.items(), key=lambda item: (-item[1], str(item[0]))
    ):
        outcomes.add_row(safe_text(outcome), safe_text(flag_outcome), str(count))
    outcomes.print(console)

    flagged = {key: group for key, group in summary.by_client.items() if group.flagged}
    if flagged:
        _group_grid(
            f"Clients advertising request-mTLS ({total.flagged} of {total.connections} connections)",
            ("client",),
            {(key,): group for key, group in flagged.items()},
            top,
        ).print(console)
    else:
        console.print(Text(f"No client advertises request-mTLS (0 of {total.connections} connections)."))
        console.print()
    if summary.by_ja4:
        _group_grid("By JA4", ("ja4",), {(key,): group for key, group in summary.by_ja4.items()}, top).print(console)
    if summary.by_server:
        by_server = _group_grid(
            "By server (name and address)", ("server name", "address"), summary.by_server, top, absent="(no SNI)"
        )
        by_server.print(console)

    if total.findings:
        findings = Grid("Client cert findings", ("finding", "connections"), atoms=("connections",))
        for code, count in by_count(total.findings).items():
            findings.add_row(safe_text(code), str(count))
        findings.print(console)

    shown_stats = {name: value for name, value in (stats or {}).items() if value or name not in _LIVE_ONLY}
    if shown_stats:
        run = Table(title="Run statistics", show_header=False, box=box.SIMPLE, title_justify="left")
        run.add_column("counter")
        run.add_column("value", justify="right", no_wrap=True)
        for name, value in shown_stats.items():
            run.add_row(name.replace("_", " "), str(value), style="yellow" if value and _is_warning(name) else None)
        console.print(run)


def _group_grid(
    title: str, keys: tuple[str, ...], groups: Mapping[tuple[Any, ...], Aggregate], top: int, absent: str = "-"
) -> Grid:
    """The top groups, flagged first; ``absent`` stands for a first key part that is null (no SNI)."""
    shown = ranked_items(groups, top)
    more = len(groups) - len(shown)
    grid = Grid(
        title + (f", top {len(shown)} of {len(groups)}" if more else ""),
        (*keys, *_COUNTS, "outcomes", "cert findings"),
        atoms=(*keys[1:], *_COUNTS),
        lead=len(keys),
    )
    for key, counts in shown:
        grid.add_row(
            Text(absent, style="dim") if key[0] is None else safe_text(key[0]),
            *(safe_text(part) for part in key[1:]),
            str(counts["connections"]),
            str(counts["flagged"]),
            *(str(counts["flag_outcomes"].get(answer, 0)) for answer in FLAG_ANSWERS),
            safe_text(_counts_text(counts["outcomes"]) or "-", limit=MAX_CELL * 2),
            safe_text(_counts_text(counts["certificate_findings"]) or "-", limit=MAX_CELL * 2),
        )
    return grid


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _is_warning(counter: str) -> bool:
    return counter in {
        "truncated_files",
        "flow_cap_evictions",
        "stream_byte_cap_hits",
        "overlap_conflicts",
        "stream_gaps",
        "events_lost",
    }
