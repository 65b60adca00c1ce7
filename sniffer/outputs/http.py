"""Batched HTTP POST of events: Elasticsearch ``_bulk`` (NDJSON) and Splunk HEC.

Retried: connection failures, timeouts, 408, 429, 5xx, and 401/403/404 (a wrong token, URL or
permission is fixed by a person; meanwhile events wait in the spool rather than being thrown away).
Refused for good, counted and not retried: 400, 413 and other 4xx, where sending the same bytes again
cannot succeed. In an Elasticsearch 200 answer with ``errors: true``, items that failed with 429 or 5xx
are sent again; items that failed otherwise (mapping errors) are counted as rejected.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from helloscope.sniffer.outputs.delivery import DeliveryError, Sent

_TIMEOUT_SECONDS = 30.0
_RETRIED_STATUSES = frozenset({401, 403, 404, 408, 429})


def bulk_record(index: str) -> Callable[[Mapping[str, Any], str], bytes]:
    """Elasticsearch ``_bulk``: a ``create`` action line then the document (works for indices and data streams).

    The document's ``_id`` is its ``event.id``, the same each time the connection's event is sent, so a
    batch sent again after a timeout cannot index it twice: Elasticsearch answers 409 for what it has. An
    event without one (the live stats event, ``--fields`` without ``event.id``) gets an id from Elasticsearch.
    """
    named = json.dumps(index)
    anonymous = f'{{"create":{{"_index":{named}}}}}'

    def record(event: Mapping[str, Any], json_text: str) -> bytes:
        about = event.get("event")
        identity = about.get("id") if isinstance(about, Mapping) else None
        action = anonymous if identity is None else f'{{"create":{{"_index":{named},"_id":{json.dumps(identity)}}}}}'
        return f"{action}\n{json_text}\n".encode()

    return record


def hec_record(event: Mapping[str, Any], json_text: str) -> bytes:
    """Splunk HEC event envelope; ``time`` is the event's ``@timestamp`` (HEC uses arrival time without it)."""
    envelope = f'{{"sourcetype":"helloscope","source":"helloscope","event":{json_text}'
    seconds = _epoch(event.get("@timestamp"))
    return (envelope + (f',"time":{seconds:.6f}}}' if seconds is not None else "}") + "\n").encode()


def _epoch(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def bulk_outcome(count: int, body: bytes) -> Sent:
    """Per-item results of a 200 ``_bulk`` answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return Sent()  # a 2xx with no readable body: the batch was accepted
    if not isinstance(answer, dict) or not answer.get("errors"):
        return Sent()
    items = answer.get("items")
    if not isinstance(items, list) or len(items) != count:
        return Sent()
    retry: list[int] = []
    rejected = 0
    for index, item in enumerate(items):
        result: object = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
        status = result.get("status", 200) if isinstance(result, dict) else 200
        if not isinstance(status, int) or status < 300 or status == 409:  # 409: already there from an earlier try
            continue
        if status == 429 or status >= 500:
            retry.append(index)
        else:
            rejected += 1
    return Sent(retry=tuple(retry), rejected=rejected)


def whole_batch_outcome(count: int, body: bytes) -> Sent:
    """HEC answers for the batch as a whole: a 2xx means every event was accepted."""
    return Sent()


class HttpTransport:
    """A keep-alive connection POSTing each batch as one body."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        path: str,
        headers: Mapping[str, str],
        linger: float,
        tls: ssl.SSLContext | None,
        outcome: Callable[[int, bytes], Sent],
    ) -> None:
        self.name = name
        self.linger = linger
        self._host = host
        self._port = port
        self._path = path
        self._headers = dict(headers)
        self._tls = tls
        self._outcome = outcome
        self._connection: http.client.HTTPConnection | None = None

    def send(self, records: Sequence[bytes]) -> Sent:
        connection = self._connected()
        try:
            connection.request("POST", self._path, body=b"".join(records), headers=self._headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise DeliveryError(f"request failed: {_reason(error)}") from error
        if response.will_close:
            self.close()
        status = response.status
        if 200 <= status < 300:
            return self._outcome(len(records), body)
        if status in _RETRIED_STATUSES or status >= 500:
            raise DeliveryError(f"HTTP {status} {response.reason}")
        return Sent(rejected=len(records))

    def abort(self) -> None:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connected(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._tls is not None:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=_TIMEOUT_SECONDS, context=self._tls
                )
            else:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=_TIMEOUT_SECONDS)
        return self._connection


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
