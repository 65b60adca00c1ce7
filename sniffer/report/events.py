"""ConnectionReport → one JSON-ready event, ECS names where ECS has them, the rest under ``helloscope``.

It only formats: everything it shows was observed, concluded or derived before (fingerprints, the
Community ID and the selected ALPN come with the report). This is the one place where
attacker-controlled bytes (SNI, ALPN, certificate names) become text: invalid UTF-8 is written as
``\\xNN`` escapes so every event is valid JSON. Terminal escaping of control characters and markup
happens at display time in :mod:`helloscope.sniffer.report.render`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from helloscope.parsers.certs import X509Summary
from helloscope.parsers.errors import ParseError
from helloscope.parsers.hello import ClientHello, ServerHello
from helloscope.parsers.registry import (
    ALERT_LEVEL_NAMES,
    CIPHER_SUITE_NAMES,
    EXTENSION_NAMES,
    GROUP_NAMES,
    QUIC_VERSION_NAMES,
    is_grease,
    version_text,
)
from helloscope.sniffer import __version__
from helloscope.sniffer.memo import repeated
from helloscope.sniffer.report.model import (
    AlertFinding,
    ClientCertificateFinding,
    ConnectionReport,
    DtlsSummary,
    HelloFingerprints,
    ServerCertificateFinding,
    ServerFingerprints,
    TcpSummary,
)
from helloscope.sniffer.vocabulary import Outcome

ECS_VERSION = "8.11.0"
_EVENT_OUTCOME = {
    Outcome.AUTHENTICATED: "success",
    Outcome.DECLINED: "success",
    Outcome.NOT_REQUESTED: "success",
    Outcome.REJECTED: "failure",
    Outcome.FAILED: "failure",
}


@dataclass(frozen=True, slots=True)
class Observer:
    """The sensor, and where it read the connections: a capture file (analyze) or interfaces (live)."""

    name: str
    version: str = __version__
    capture_file: str | None = None  # log.file.path
    interfaces: tuple[str, ...] = ()  # observer.ingress.interface.name

    @property
    def source(self) -> str:
        """What the connection was read from, as part of its identity (event.id)."""
        return self.capture_file if self.capture_file is not None else ",".join(self.interfaces)


def text_of(raw: bytes) -> str:
    """Wire bytes as text: UTF-8 where valid, ``\\xNN`` for every byte that is not."""
    return raw.decode("utf-8", "backslashreplace")


# Valid inside JSON strings, but line breaks to consumers that split on Unicode (JavaScript, Python's
# str.splitlines): written as escapes so one event stays one line for every reader.
_UNICODE_LINE_BREAKS = (("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\u0085", "\\u0085"))


def to_json_line(event: dict[str, Any]) -> str:
    """One event as one line of compact UTF-8 JSON."""
    text = orjson.dumps(event).decode()
    for character, escape in _UNICODE_LINE_BREAKS:
        if character in text:
            text = text.replace(character, escape)
    return text + "\n"


def iso_time(timestamp: float) -> str:
    """ECS timestamp text: UTC, microseconds, Z."""
    return _iso(datetime.fromtimestamp(timestamp, UTC))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_id(observer: Observer, community_id: str, start: str) -> str:
    """The same for the same connection every time it is reported or sent again (the _bulk document id)."""
    identity = "\x00".join((observer.name, observer.source, community_id, start))
    return hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _named(value: int, names: dict[int, str]) -> str:
    if is_grease(value):
        return "GREASE"
    return names.get(value, f"0x{value:04x}")


# A link carries a few hundred ClientHello shapes over and over: their name lists are made once each.
@repeated(2048, 512)
def _cipher_names(suites: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(_named(suite, CIPHER_SUITE_NAMES) for suite in suites)


@repeated(2048, 512)
def _extension_names(types: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(_named(kind, EXTENSION_NAMES) for kind in types)


def build_event(report: ConnectionReport, observer: Observer) -> dict[str, Any]:
    handshake = report.handshake
    conclusion = report.conclusion
    endpoints = report.endpoints
    hello = report.client_hello
    fingerprints = report.client_hello_fingerprints
    server_hello = handshake.server_hello
    version, protocol = version_text(handshake.version) if handshake.version is not None else (None, None)
    flags = report.tls_flags
    leaf = conclusion.client_certificate.chain[0] if conclusion.client_certificate.chain else None
    start = iso_time(report.start)
    source: dict[str, Any] = {"ip": endpoints.client_ip, "port": endpoints.client_port}
    destination: dict[str, Any] = {"ip": endpoints.server_ip, "port": endpoints.server_port}
    if hello is not None and hello.server_name is not None:
        destination["domain"] = text_of(hello.server_name)
    if report.tcp is not None:
        source["bytes"], destination["bytes"] = report.tcp.client_bytes, report.tcp.server_bytes
    event = {
        "@timestamp": start,
        "event": {
            "id": event_id(observer, report.community_id, start),
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "protocol"],
            "module": "helloscope",
            "dataset": "helloscope.tls",
            "start": start,
            "end": iso_time(report.end),
            "duration": round((report.end - report.start) * 1e9),
            "outcome": _EVENT_OUTCOME.get(conclusion.outcome, "unknown"),
        },
        "ecs": {"version": ECS_VERSION},
        "observer": _observer(observer),
        "source": source,
        "destination": destination,
        "network": {
            "transport": endpoints.transport,
            "type": "ipv6" if endpoints.ipv6 else "ipv4",
            "protocol": report.protocol,
            "community_id": report.community_id,
        },
        "tls": {
            "version": version,
            "version_protocol": protocol,
            "cipher": _named(server_hello.cipher_suite, CIPHER_SUITE_NAMES) if server_hello else None,
            "curve": _named(handshake.key_exchange_group, GROUP_NAMES)
            if handshake.key_exchange_group is not None
            else None,
            "established": conclusion.established,
            "resumed": handshake.resumed,
            "next_protocol": text_of(report.next_protocol) if report.next_protocol is not None else None,
            "client": _tls_client(hello, leaf, fingerprints[0] if fingerprints else None),
            "server": _tls_server(report),
        },
        "helloscope": {
            "request_mtls": report.request_mtls,
            "tls_flags": {
                "codepoint": flags.codepoint if flags else None,
                "flags": list(flags.flags) if flags else [],
                "names": list(flags.names) if flags else [],
                "malformations": list(flags.malformations) if flags else [],
                # A real ECH ClientHello carries tls_flags in the encrypted inner hello only.
                "observable": not (hello is not None and hello.ech is not None and hello.ech.ech_type == 0),
            },
            "certificate_request": _certificate_request(report),
            "client_certificate": _client_certificate(conclusion.client_certificate, report.certificate_findings),
            "server_certificate": _server_certificate(report.server_certificate),
            "alerts": [_alert(alert) for alert in conclusion.alerts],
            "decryption": _decryption(report),
            "outcome": conclusion.outcome,
            "outcome_evidence": conclusion.outcome_evidence,
            "outcome_confidence": conclusion.outcome_confidence,
            "outcome_basis": conclusion.outcome_basis,
            "flag_outcome": conclusion.flag_outcome,
            "flag_outcome_evidence": conclusion.flag_outcome_evidence,
            "client_hello": _client_hello(hello, fingerprints[0]) if hello and fingerprints else None,
            "hello_retry_request": handshake.hello_retry_request is not None,
            "renegotiation": handshake.renegotiation,
            "second_client_hello": (
                _client_hello(handshake.client_hellos[1], fingerprints[1]) if len(fingerprints) > 1 else None
            ),
            "server_hello": (
                _server_hello(server_hello, report.server_fingerprints)
                if server_hello and report.server_fingerprints
                else None
            ),
            "preamble": (
                {
                    "protocol": report.preamble.protocol,
                    "client_bytes": report.preamble.client_bytes,
                    "server_bytes": report.preamble.server_bytes,
                }
                if report.preamble
                else None
            ),
            "tcp": _tcp(report),
            "quic": _quic(report),
            "dtls": _dtls(report),
            "end_reason": report.end_reason,
            "anomalies": list(report.anomalies),
        },
    }
    if observer.capture_file is not None:
        event["log"] = {"file": {"path": observer.capture_file}}
    return event


def _observer(observer: Observer) -> dict[str, Any]:
    body: dict[str, Any] = {"name": observer.name, "product": "helloscope", "type": "sensor"}
    body["version"] = observer.version
    interfaces = observer.interfaces
    if interfaces:
        # The capture does not say which interface a frame came from: with several, all are named.
        body["ingress"] = {"interface": {"name": interfaces[0] if len(interfaces) == 1 else list(interfaces)}}
    return body


def _tls_client(
    hello: ClientHello | None, leaf: X509Summary | None, fingerprints: HelloFingerprints | None
) -> dict[str, Any]:
    client: dict[str, Any] = {
        "server_name": text_of(hello.server_name) if hello and hello.server_name is not None else None,
    }
    if hello is not None and fingerprints is not None:
        client["supported_ciphers"] = list(_cipher_names(hello.cipher_suites))
        client["ja3"] = fingerprints.ja3
        client["ja4"] = fingerprints.ja4.ja4
    if leaf is not None:
        client.update(_ecs_certificate(leaf))
    return client


def _tls_server(report: ConnectionReport) -> dict[str, Any]:
    server: dict[str, Any] = {"ja3s": report.server_fingerprints.ja3s} if report.server_fingerprints else {}
    certificate = report.server_certificate
    if certificate is not None and certificate.leaf is not None:
        server.update(_ecs_certificate(certificate.leaf))
    elif certificate is not None and certificate.chain_sha256:
        server["hash"] = {"sha256": certificate.chain_sha256[0]}
    return server


def _ecs_certificate(leaf: X509Summary) -> dict[str, Any]:
    """ECS tls.client.* / tls.server.*: the certificate's hashes, names and validity, and its x509 fields."""
    return {
        "hash": {"sha256": leaf.sha256, "sha1": leaf.sha1},
        "subject": leaf.subject,
        "issuer": leaf.issuer,
        "not_before": _date(leaf.not_before),
        "not_after": _date(leaf.not_after),
        "x509": _ecs_x509(leaf),
    }


# ECS's value conventions (its examples RSA and nistp521); cryptography names keys and curves otherwise.
_ECS_KEY_ALGORITHMS = {"rsa": "RSA", "ec": "EC", "dsa": "DSA", "ed25519": "Ed25519", "ed448": "Ed448"}
_ECS_CURVES = {"secp224r1": "nistp224", "secp256r1": "nistp256", "secp384r1": "nistp384", "secp521r1": "nistp521"}


def _ecs_x509(summary: X509Summary) -> dict[str, Any]:
    x509: dict[str, Any] = {
        "subject": {"distinguished_name": summary.subject, "common_name": list(summary.subject_common_names)},
        "issuer": {"distinguished_name": summary.issuer, "common_name": list(summary.issuer_common_names)},
        "serial_number": summary.serial_number,
        "not_before": _date(summary.not_before),
        "not_after": _date(summary.not_after),
        "version_number": str(summary.version) if summary.version is not None else None,
        "signature_algorithm": summary.signature_algorithm or None,
        "alternative_names": [*summary.san_dns, *summary.san_ip, *summary.san_email],
    }
    algorithm = _ECS_KEY_ALGORITHMS.get(summary.key_type)
    if algorithm is not None:
        x509["public_key_algorithm"] = algorithm
    if summary.key_bits is not None:
        x509["public_key_size"] = summary.key_bits
    if summary.curve is not None:
        x509["public_key_curve"] = _ECS_CURVES.get(summary.curve, summary.curve)
    return x509


def _date(moment: datetime | None) -> str | None:
    return None if moment is None else _iso(moment)


def _certificate_request(report: ConnectionReport) -> dict[str, Any]:
    finding = report.conclusion.certificate_request
    body: dict[str, Any] = {"seen": finding.seen, "evidence": finding.evidence}
    if finding.confidence is not None:
        body["confidence"], body["basis"] = finding.confidence, finding.basis
    message = finding.message
    if message is not None:
        body["signature_algorithms"] = list(message.signature_algorithms)
        body["certificate_types"] = list(message.certificate_types)
        body["certificate_authorities"] = [_name_text(name) for name in message.certificate_authorities]
        body["echoes_request_mtls"] = message.echoes_request_mtls
    return body


# A server asks for a certificate naming the same authorities on every connection, and reading a name
# costs cryptography more than the rest of the event: each distinct name is read once.
@repeated(1024, 1024)
def _name_text(der_name: bytes) -> str:
    from helloscope.parsers.x509 import name_to_text  # cryptography loads with the first name to show

    try:
        return name_to_text(der_name)
    except ParseError as error:
        return f"<unreadable name: {error.what}>"


def _client_certificate(finding: ClientCertificateFinding, hygiene: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {"state": finding.state, "evidence": finding.evidence}
    if finding.confidence is not None:
        body["confidence"], body["basis"] = finding.confidence, finding.basis
    if finding.chain_length:
        body["chain_length"] = finding.chain_length
        body["chain"] = [_x509_summary(summary) for summary in finding.chain]
        if finding.chain:
            body["findings"] = list(hygiene)
        if finding.unreadable:
            body["unreadable"] = list(finding.unreadable)
    return body


def _server_certificate(finding: ServerCertificateFinding | None) -> dict[str, Any] | None:
    if finding is None:
        return None
    leaf = finding.leaf
    return {
        "evidence": finding.evidence,
        "chain_length": len(finding.chain_sha256),
        "chain_sha256": list(finding.chain_sha256),
        "unreadable": [*finding.unreadable, *(leaf.unreadable if leaf else ())],
    }


def _x509_summary(summary: X509Summary) -> dict[str, Any]:
    return {
        "subject": summary.subject,
        "issuer": summary.issuer,
        "sha256": summary.sha256,
        "serial_number": summary.serial_number,
        "not_before": _date(summary.not_before),
        "not_after": _date(summary.not_after),
        "key_type": summary.key_type,
        "key_bits": summary.key_bits,
        "curve": summary.curve,
        "extended_key_usage": list(summary.extended_key_usage),
        "client_auth": summary.client_auth,
        "server_auth_only": summary.server_auth_only,
        "sct_count": summary.sct_count,
        "self_signed": summary.self_signed,
        "san_dns": list(summary.san_dns),
        "san_ip": list(summary.san_ip),
        "san_email": list(summary.san_email),
        "unreadable": list(summary.unreadable),
    }


def _alert(alert: AlertFinding) -> dict[str, Any]:
    return {
        "sender": alert.sender,
        "level": ALERT_LEVEL_NAMES.get(alert.level, alert.level) if alert.level is not None else None,
        "description": alert.name,
        "code": alert.description,
        "evidence": alert.evidence,
        "encrypted": alert.level is None,
    }


def _client_hello(hello: ClientHello, fingerprints: HelloFingerprints) -> dict[str, Any]:
    ech = hello.ech
    extension_types = hello.extension_types  # a property that builds the tuple: once
    extension_names = _extension_names(extension_types)
    return {
        "legacy_version": hello.legacy_version,
        "max_version": version_text(hello.max_version)[0],
        "supported_versions": list(hello.supported_versions),
        "cipher_suites": list(hello.cipher_suites),
        "extensions": list(extension_types),
        "extension_names": list(extension_names),
        "supported_groups": list(hello.supported_groups),
        "key_share_groups": list(hello.key_share_groups),
        "signature_algorithms": list(hello.signature_algorithms),
        "ec_point_formats": list(hello.ec_point_formats),
        "alpn": [text_of(name) for name in hello.alpn],
        "psk_key_exchange_modes": list(hello.psk_key_exchange_modes),
        "pre_shared_key": hello.has_pre_shared_key,
        "post_handshake_auth": hello.post_handshake_auth,
        "ech": (
            {
                "type": "outer" if ech.ech_type == 0 else "inner",
                "kdf_id": ech.kdf_id,
                "aead_id": ech.aead_id,
                "config_id": ech.config_id,
                "payload_length": ech.payload_length,
            }
            if ech
            else None
        ),
        "padding_length": hello.padding_length,
        "session_id_length": len(hello.session_id),
        "compression_methods": list(hello.compression_methods),
        # The name lists, cached per shape, name every GREASE value so (no registry name is "GREASE").
        "grease": "GREASE" in extension_names or "GREASE" in _cipher_names(hello.cipher_suites),
        "sslv2": hello.sslv2,
        "ja3_full": fingerprints.ja3_full,
        # FoxIO's JA4.N numbering is client_hello (1) and second_client_hello (2).
        "ja4": fingerprints.ja4.ja4,
        "ja4_r": fingerprints.ja4.ja4_r,
        "ja4_o": fingerprints.ja4.ja4_o,
        "ja4_ro": fingerprints.ja4.ja4_ro,
    }


def _server_hello(hello: ServerHello, fingerprints: ServerFingerprints) -> dict[str, Any]:
    return {
        "legacy_version": hello.legacy_version,
        "selected_version": hello.selected_version,
        "cipher_suite": hello.cipher_suite,
        "extensions": [extension.type for extension in hello.extensions],
        "key_share_group": hello.key_share_group,
        "pre_shared_key": hello.has_pre_shared_key,
        "ja3s_full": fingerprints.ja3s_full,
    }


def _decryption(report: ConnectionReport) -> dict[str, Any]:
    summary = report.decryption
    body: dict[str, Any] = {"status": summary.status, "reason": summary.reason, "records": summary.records}
    if summary.records:
        body.update(
            client_finished=summary.client_finished,
            server_finished=summary.server_finished,
            certificate_verify=summary.certificate_verify,
            post_handshake_certificate_request=summary.post_handshake_certificate_request,
            new_session_tickets=summary.tickets,
            ticket_flags=list(summary.ticket_flags),
            source=summary.source,
        )
    return body


def _tcp(report: ConnectionReport) -> dict[str, Any] | None:
    return None if report.tcp is None else _fields_of(report.tcp)


def _fields_of(summary: TcpSummary | DtlsSummary) -> dict[str, Any]:
    """A summary whose field names are its event keys, in field order."""
    return {name: getattr(summary, name) for name in _FIELD_NAMES[type(summary)]}


# Read once: dataclasses.fields() builds its list again at every call (once per event).
_FIELD_NAMES: Final = {kind: tuple(field.name for field in fields(kind)) for kind in (TcpSummary, DtlsSummary)}


def _quic(report: ConnectionReport) -> dict[str, Any] | None:
    quic = report.quic
    if quic is None:
        return None
    close = quic.close
    return {
        "version": f"0x{quic.version:08x}",
        "version_name": QUIC_VERSION_NAMES.get(quic.version),
        "original_dcid": quic.original_dcid.hex(),
        "retry": quic.retry,
        "client_initial_packets": quic.client_packets,
        "server_initial_packets": quic.server_packets,
        "undecryptable_initial_packets": quic.undecryptable,
        "handshake_packets": quic.handshake_packets,
        "crypto_duplicates": quic.crypto_duplicates,
        # bytes values (connection IDs, tokens, preferred_address) as hex; GREASE ids can repeat, so a list
        "transport_parameters": [
            {"name": name, "value": value.hex() if isinstance(value, bytes) else value}
            for name, value in quic.transport_parameters
        ],
        "connection_close": (
            {
                "sender": close.sender,
                "packet_type": close.packet_type,
                "error_code": close.error_code,
                "frame_type": close.frame_type,
                "application": close.application,
                "reason": text_of(close.reason),
            }
            if close is not None
            else None
        ),
    }


def _dtls(report: ConnectionReport) -> dict[str, Any] | None:
    return None if report.dtls is None else _fields_of(report.dtls)
