"""Aggregates over events, from a run in progress or from what helloscope wrote (``helloscope summary``).

Stored events are whatever a file holds: whole events, events trimmed with ``--fields``, the live
sensor's closing ``helloscope.stats`` event, compressed rotated logs. Every field is read by its dotted
path and checked for its type: an absent field is counted as missing (the summary says so), a value of
the wrong type is :class:`StoredEventError`, so the caller can name the line instead of failing later.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final

STATS_DATASET: Final = "helloscope.stats"
TLS_DATASET: Final = "helloscope.tls"
FLAG_ANSWERS: Final = ("honored", "ignored", "unsolicited", "unknown")
TOP_GROUPS: Final = 10  # groups a person is shown per table unless they ask for more
# A longer line is not an event (a capture file given by mistake has no newline for megabytes).
MAX_LINE: Final = 16 << 20
_ABSENT: Final = object()
_FINDINGS: Final = "helloscope.client_certificate.findings"


class StoredEventError(Exception):
    """A line that is not a helloscope event; the message says why, without the line's place."""


def _is(kind: type | tuple[type, ...]) -> Any:
    # bool is an int to isinstance: a count or a port must not accept true
    return lambda value: isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# Every field the summary reads: dotted path -> (check, what the type is called in a message).
FIELDS: Final[dict[str, tuple[Any, str]]] = {
    "source.ip": (_is(str), "a string"),
    "destination.ip": (_is(str), "a string"),
    "destination.port": (_is(int), "an integer"),
    "tls.client.server_name": (_is(str), "a string"),
    "tls.client.ja4": (_is(str), "a string"),
    "helloscope.request_mtls": (_is(bool), "true or false"),
    "helloscope.outcome": (_is(str), "a string"),
    "helloscope.flag_outcome": (_is(str), "a string"),
    "helloscope.client_certificate.findings": (_strings, "a list of strings"),
}


def lookup(event: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted``, None when null, ``_ABSENT`` when a part of the path is missing."""
    return _lookup_parts(event, dotted.split("."))


def _lookup_parts(event: Mapping[str, Any], parts: Iterable[str]) -> Any:
    value: Any = event
    for part in parts:
        # a dict is what events are: the exact type test spares most values the Mapping ABC's
        if not (type(value) is dict or isinstance(value, Mapping)) or part not in value:
            return _ABSENT
        value = value[part]
    return value


# FIELDS with each path split once: Summary.add reads all of them for every connection.
_FIELD_PARTS: Final = tuple((path, tuple(path.split(".")), check, kind) for path, (check, kind) in FIELDS.items())


@dataclass(slots=True)
class Aggregate:
    """Counts over a group of connections: how many, how many advertised the flag, how they ended."""

    connections: int = 0
    flagged: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    flag_outcomes: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)

    def add(self, facts: Mapping[str, Any]) -> None:
        self.connections += 1
        self.flagged += facts["helloscope.request_mtls"] is True
        for counter, path in ((self.outcomes, "helloscope.outcome"), (self.flag_outcomes, "helloscope.flag_outcome")):
            if facts[path] is not None:
                counter[facts[path]] += 1
        findings = facts["helloscope.client_certificate.findings"]
        if findings:  # rarely: Counter.update costs as much for nothing as for a few codes
            self.findings.update(findings)

    def merge(self, other: Aggregate) -> None:
        """Count ``other``'s connections too."""
        self.connections += other.connections
        self.flagged += other.flagged
        self.outcomes.update(other.outcomes)
        self.flag_outcomes.update(other.flag_outcomes)
        self.findings.update(other.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "flagged": self.flagged,
            "outcomes": by_count(self.outcomes),
            "flag_outcomes": by_count(self.flag_outcomes),
            "certificate_findings": by_count(self.findings),
        }


def by_count(counts: Counter[str]) -> dict[str, int]:
    """The most frequent first, ties by name: an order that does not depend on the order events came in."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _groups() -> defaultdict[Any, Aggregate]:
    return defaultdict(Aggregate)


ServerKey = tuple[str | None, str | None]  # server name (SNI), address "ip:port"


@dataclass(slots=True)
class Summary:
    """Aggregates over events (dicts as emitted), so stored JSON lines are summarised the same way.

    Groups are keyed by client address, by JA4 (first ClientHello) and by server, a server being its
    name and its address: a connection without SNI is still counted under its address.
    """

    total: Aggregate = field(default_factory=Aggregate)
    outcome_pairs: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    by_client: defaultdict[str, Aggregate] = field(default_factory=_groups)
    by_ja4: defaultdict[str, Aggregate] = field(default_factory=_groups)
    by_server: defaultdict[ServerKey, Aggregate] = field(default_factory=_groups)
    # fields absent from stored events (trimmed with --fields), and how many events lacked each
    missing: Counter[str] = field(default_factory=Counter)
    # counters of the live sensor's closing stats events, summed over the files read
    stats: Counter[str] = field(default_factory=Counter)

    def add(self, event: Mapping[str, Any]) -> None:
        """Count one connection event; raises :class:`StoredEventError` for a field of the wrong type."""
        facts: dict[str, Any] = {}
        for path, parts, check, kind in _FIELD_PARTS:
            value = _lookup_parts(event, parts)
            if value is _ABSENT:
                # an event lists certificate findings only when it has some
                if path != _FINDINGS or lookup(event, "helloscope.client_certificate") is _ABSENT:
                    self.missing[path] += 1
                value = None
            elif value is not None and not check(value):
                raise StoredEventError(f"{path} is {_kind_of(value)}, not {kind}")
            facts[path] = value
        self.total.add(facts)
        self.outcome_pairs[(facts["helloscope.outcome"], facts["helloscope.flag_outcome"])] += 1
        if facts["source.ip"] is not None:
            self.by_client[facts["source.ip"]].add(facts)
        if facts["tls.client.ja4"] is not None:
            self.by_ja4[facts["tls.client.ja4"]].add(facts)
        server = address(facts["destination.ip"], facts["destination.port"])
        if server is not None or facts["tls.client.server_name"] is not None:
            self.by_server[(facts["tls.client.server_name"], server)].add(facts)

    def merge(self, other: Summary) -> None:
        """Count ``other``'s events too: as if each had been added here (workers' summaries of their share)."""
        self.total.merge(other.total)
        self.outcome_pairs.update(other.outcome_pairs)
        _merge_groups(self.by_client, other.by_client)
        _merge_groups(self.by_ja4, other.by_ja4)
        _merge_groups(self.by_server, other.by_server)
        self.missing.update(other.missing)
        self.stats.update(other.stats)

    def add_stats(self, event: Mapping[str, Any]) -> None:
        counters = lookup(event, "helloscope.stats")
        if not isinstance(counters, Mapping) or not all(_is(int)(value) for value in counters.values()):
            raise StoredEventError("helloscope.stats is not an object of counts")
        self.stats.update(counters)

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        """The same aggregates as the tables, as one JSON-ready document (``summary --json``)."""
        return {
            **self.total.as_dict(),
            "by_client": ranked(self.by_client, top),
            "by_ja4": ranked(self.by_ja4, top),
            "by_server": [
                {"server_name": name, "address": where, **counts}
                for (name, where), counts in ranked_items(self.by_server, top)
            ],
            "missing_fields": dict(sorted(self.missing.items())),
            **({"run_statistics": dict(self.stats)} if self.stats else {}),
        }


def _merge_groups(groups: defaultdict[Any, Aggregate], others: Mapping[Any, Aggregate]) -> None:
    for key, aggregate in others.items():
        groups[key].merge(aggregate)


def address(ip: object, port: object) -> str | None:
    """``ip:port``, an IPv6 address in brackets so its colons do not run into the port."""
    if ip is None:
        return None
    if port is None:
        return str(ip)
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


def _kind_of(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _order(item: tuple[Any, Aggregate]) -> tuple[int, int, str]:
    key, aggregate = item
    return (-aggregate.flagged, -aggregate.connections, json.dumps(key))


def ranked_items(groups: Mapping[Any, Aggregate], top: int | None = None) -> list[tuple[Any, dict[str, Any]]]:
    """Groups with the most flagged connections first, then the busiest; ties by key for stable output."""
    return [(key, aggregate.as_dict()) for key, aggregate in sorted(groups.items(), key=_order)[:top]]


def ranked(groups: Mapping[str, Aggregate], top: int | None = None) -> dict[str, dict[str, Any]]:
    return dict(ranked_items(groups, top))


# -- stored events --------------------------------------------------------------------------------


def read_events(stream: IO[bytes], summary: Summary) -> Iterator[int]:
    """Add every event of a JSON-lines stream to ``summary``, yielding each line number as it is done.

    Raises :class:`StoredEventError` for the first line that is not a helloscope event, its message
    starting with the line number; the stream's own read errors pass through.
    """
    number = 0
    while line := stream.readline(MAX_LINE):
        number += 1
        try:
            _add_line(line, summary)
        except StoredEventError as error:
            raise StoredEventError(f"line {number}: {error}") from None
        yield number


def _add_line(line: bytes, summary: Summary) -> None:
    if len(line) >= MAX_LINE and not line.endswith(b"\n"):
        raise StoredEventError(f"longer than {MAX_LINE >> 20} MiB: not JSON lines")
    if not line.strip():
        return
    try:
        event = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise StoredEventError("not UTF-8 text: not JSON lines") from None
    except RecursionError:
        raise StoredEventError("nested too deeply to be an event") from None
    except ValueError as error:  # JSONDecodeError, and integers longer than Python converts
        raise StoredEventError(f"not JSON ({str(error).split(':')[0]})") from None
    if not isinstance(event, dict):
        raise StoredEventError(f"{_kind_of(event)}, not a JSON object")
    dataset = lookup(event, "event.dataset")
    if dataset == STATS_DATASET:
        summary.add_stats(event)
    elif dataset in (TLS_DATASET, _ABSENT, None) and any(lookup(event, path) is not _ABSENT for path in FIELDS):
        summary.add(event)
    else:
        shown = f" (event.dataset {str(dataset)[:40]!r})" if dataset is not _ABSENT else ""
        raise StoredEventError(f"not a helloscope event{shown}")
