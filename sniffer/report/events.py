"""ConnectionReport → one JSON-ready event, ECS names where ECS has them, the rest under ``helloscope``.

This is the one place where attacker-controlled bytes (SNI, ALPN, certificate names) become text:
invalid UTF-8 is written as ``\\xNN`` escapes so every event is valid JSON. Terminal escaping of
control characters and markup happens at display time in :mod:`helloscope.sniffer.report.render`.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from helloscope.parsers.certs import X509Summary, name_to_text
from helloscope.parsers.community_id import community_id
from helloscope.parsers.errors import ParseError
from helloscope.parsers.fingerprints import Ja4, ja3, ja3_string, ja3s, ja3s_string, ja4_variants
from helloscope.parsers.hello import ClientHello, ServerHello, selected_alpn
from helloscope.parsers.quic import VERSION_NAMES as QUIC_VERSION_NAMES
from helloscope.parsers.registry import CIPHER_SUITE_NAMES, EXTENSION_NAMES, GROUP_NAMES, is_grease, version_text
from helloscope.sniffer import __version__
from helloscope.sniffer.handshake.hygiene import certificate_findings
from helloscope.sniffer.report.model import (
    AUTHENTICATED,
    DECLINED,
    FAILED,
    NOT_REQUESTED,
    REJECTED,
    AlertFinding,
    ClientCertificateFinding,
    ConnectionReport,
)

ECS_VERSION = "8.11.0"
_EVENT_OUTCOME = {
    AUTHENTICATED: "success",
    DECLINED: "success",
    NOT_REQUESTED: "success",
    REJECTED: "failure",
    FAILED: "failure",
}
_ALERT_LEVELS = {1: "warning", 2: "fatal"}
_IANA_PROTOCOLS = {"tcp": 6, "udp": 17}


@dataclass(frozen=True, slots=True)
class Observer:
    name: str
    version: str = __version__


def text_of(raw: bytes) -> str:
    """Wire bytes as text: UTF-8 where valid, ``\\xNN`` for every byte that is not."""
    return raw.decode("utf-8", "backslashreplace")


def to_json_line(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"


def iso_time(timestamp: float) -> str:
    """ECS timestamp text: UTC, microseconds, Z."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _named(value: int, names: dict[int, str]) -> str:
    if is_grease(value):
        return "GREASE"
    return names.get(value, f"0x{value:04x}")


def build_event(report: ConnectionReport, observer: Observer) -> dict[str, Any]:
    handshake = report.handshake
    hello = report.client_hello
    server_hello = handshake.server_hello
    version, protocol = version_text(handshake.version) if handshake.version is not None else (None, None)
    flags = report.tls_flags
    leaf = report.client_certificate.chain[0] if report.client_certificate.chain else None
    # tls.client and helloscope.client_hello both show the first hello's JA4: computed once.
    fingerprints = ja4_variants(hello, _ja4_transport(report)) if hello is not None else None
    return {
        "@timestamp": iso_time(report.start),
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "protocol"],
            "module": "helloscope",
            "dataset": "helloscope.tls",
            "start": iso_time(report.start),
            "end": iso_time(report.end),
            "duration": round((report.end - report.start) * 1e9),
            "outcome": _EVENT_OUTCOME.get(report.outcome, "unknown"),
        },
        "ecs": {"version": ECS_VERSION},
        "observer": {"name": observer.name, "product": "helloscope", "type": "sensor", "version": observer.version},
        "source": {"ip": report.client_ip, "port": report.client_port},
        "destination": {"ip": report.server_ip, "port": report.server_port},
        "network": {
            "transport": report.transport,
            "type": "ipv6" if ":" in report.client_ip else "ipv4",
            "protocol": "quic" if report.quic is not None else "tls",
            "community_id": _community_id(report),
        },
        "tls": {
            "version": version,
            "version_protocol": protocol,
            "cipher": _named(server_hello.cipher_suite, CIPHER_SUITE_NAMES) if server_hello else None,
            "curve": _named(handshake.key_exchange_group, GROUP_NAMES)
            if handshake.key_exchange_group is not None
            else None,
            "established": report.established,
            "resumed": handshake.resumed,
            "next_protocol": _next_protocol(report),
            "client": _tls_client(hello, leaf, fingerprints),
            "server": {"ja3s": ja3s(server_hello)} if server_hello else {},
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
            "client_certificate": _client_certificate(report.client_certificate, report.start),
            "alerts": [_alert(alert) for alert in report.alerts],
            "decryption": _decryption(report),
            "outcome": report.outcome,
            "outcome_evidence": report.outcome_evidence,
            "outcome_confidence": report.outcome_confidence,
            "outcome_basis": report.outcome_basis,
            "flag_outcome": report.flag_outcome,
            "flag_outcome_evidence": report.flag_outcome_evidence,
            "client_hello": _client_hello(hello, fingerprints) if hello and fingerprints else None,
            "hello_retry_request": handshake.hello_retry_request is not None,
            "second_client_hello": (
                _client_hello(
                    handshake.client_hellos[1], ja4_variants(handshake.client_hellos[1], _ja4_transport(report))
                )
                if len(handshake.client_hellos) > 1
                else None
            ),
            "server_hello": _server_hello(server_hello) if server_hello else None,
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
            "end_reason": report.end_reason,
            "anomalies": [*handshake.anomalies, *(hello.anomalies if hello else ()), *report.decryption.anomalies],
        },
    }


def _next_protocol(report: ConnectionReport) -> str | None:
    """ALPN the server selected: in the ServerHello (TLS <= 1.2) or the decrypted EncryptedExtensions."""
    server_hello = report.handshake.server_hello
    chosen = report.decryption.alpn or (selected_alpn(server_hello.extensions) if server_hello else None)
    return text_of(chosen) if chosen is not None else None


def _community_id(report: ConnectionReport) -> str:
    return community_id(
        _IANA_PROTOCOLS[report.transport],
        ipaddress.ip_address(report.client_ip).packed,
        report.client_port,
        ipaddress.ip_address(report.server_ip).packed,
        report.server_port,
    )


def _ja4_transport(report: ConnectionReport) -> str:
    # TLS over UDP that this sensor reads is QUIC: there is no DTLS parser.
    return "t" if report.transport == "tcp" else "q"


def _tls_client(hello: ClientHello | None, leaf: X509Summary | None, fingerprints: Ja4 | None) -> dict[str, Any]:
    client: dict[str, Any] = {
        "server_name": text_of(hello.server_name) if hello and hello.server_name is not None else None,
    }
    if hello is not None and fingerprints is not None:
        client["supported_ciphers"] = [_named(suite, CIPHER_SUITE_NAMES) for suite in hello.cipher_suites]
        client["ja3"] = ja3(hello)
        client["ja4"] = fingerprints.ja4
    if leaf is not None:
        client["hash"] = {"sha256": leaf.sha256.upper()}
        client["x509"] = _ecs_x509(leaf)
    return client


def _ecs_x509(summary: X509Summary) -> dict[str, Any]:
    x509: dict[str, Any] = {
        "subject": {"distinguished_name": summary.subject},
        "issuer": {"distinguished_name": summary.issuer},
        "serial_number": summary.serial_number.upper(),
        "not_before": iso_time(summary.not_before.timestamp()),
        "not_after": iso_time(summary.not_after.timestamp()),
        "public_key_algorithm": summary.key_type,
        "alternative_names": list(summary.san_dns),
    }
    if summary.key_bits is not None:
        x509["public_key_size"] = summary.key_bits
    if summary.curve is not None:
        x509["public_key_curve"] = summary.curve
    return x509


def _certificate_request(report: ConnectionReport) -> dict[str, Any]:
    finding = report.certificate_request
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


def _name_text(der_name: bytes) -> str:
    try:
        return name_to_text(der_name)
    except ParseError as error:
        return f"<unreadable name: {error.what}>"


def _client_certificate(finding: ClientCertificateFinding, captured_at: float) -> dict[str, Any]:
    body: dict[str, Any] = {"state": finding.state, "evidence": finding.evidence}
    if finding.confidence is not None:
        body["confidence"], body["basis"] = finding.confidence, finding.basis
    if finding.chain_length:
        body["chain_length"] = finding.chain_length
        body["chain"] = [_x509_summary(summary) for summary in finding.chain]
        if finding.chain:
            body["findings"] = certificate_findings(finding.chain[0], captured_at)
        if finding.unreadable:
            body["unreadable"] = list(finding.unreadable)
    return body


def _x509_summary(summary: X509Summary) -> dict[str, Any]:
    return {
        "subject": summary.subject,
        "issuer": summary.issuer,
        "sha256": summary.sha256,
        "serial_number": summary.serial_number,
        "not_before": iso_time(summary.not_before.timestamp()),
        "not_after": iso_time(summary.not_after.timestamp()),
        "key_type": summary.key_type,
        "key_bits": summary.key_bits,
        "curve": summary.curve,
        "extended_key_usage": list(summary.extended_key_usage),
        "client_auth": summary.client_auth,
        "server_auth_only": summary.server_auth_only,
        "sct_count": summary.sct_count,
        "self_signed": summary.self_signed,
        "san_dns": list(summary.san_dns),
    }


def _alert(alert: AlertFinding) -> dict[str, Any]:
    return {
        "sender": alert.sender,
        "level": _ALERT_LEVELS.get(alert.level, alert.level) if alert.level is not None else None,
        "description": alert.name,
        "code": alert.description,
        "evidence": alert.evidence,
        "encrypted": alert.level is None,
    }


def _client_hello(hello: ClientHello, fingerprints: Ja4) -> dict[str, Any]:
    ech = hello.ech
    return {
        "legacy_version": hello.legacy_version,
        "max_version": version_text(hello.max_version)[0],
        "supported_versions": list(hello.supported_versions),
        "cipher_suites": list(hello.cipher_suites),
        "extensions": list(hello.extension_types),
        "extension_names": [_named(kind, EXTENSION_NAMES) for kind in hello.extension_types],
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
        "grease": any(is_grease(value) for value in (*hello.cipher_suites, *hello.extension_types)),
        "sslv2": hello.sslv2,
        "ja3_full": ja3_string(hello),
        # FoxIO's JA4.N numbering is client_hello (1) and second_client_hello (2).
        "ja4": fingerprints.ja4,
        "ja4_r": fingerprints.ja4_r,
        "ja4_o": fingerprints.ja4_o,
        "ja4_ro": fingerprints.ja4_ro,
    }


def _server_hello(hello: ServerHello) -> dict[str, Any]:
    return {
        "legacy_version": hello.legacy_version,
        "selected_version": hello.selected_version,
        "cipher_suite": hello.cipher_suite,
        "extensions": [extension.type for extension in hello.extensions],
        "key_share_group": hello.key_share_group,
        "pre_shared_key": hello.has_pre_shared_key,
        "ja3s_full": ja3s_string(hello),
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
        )
    return body


def _tcp(report: ConnectionReport) -> dict[str, Any] | None:
    tcp = report.tcp
    if tcp is None:
        return None
    return {
        "client_bytes": tcp.client_bytes,
        "server_bytes": tcp.server_bytes,
        "out_of_order": tcp.out_of_order,
        "retransmitted": tcp.retransmitted,
        "overlap_conflicts": tcp.overlap_conflicts,
        "gaps": tcp.gaps,
        "byte_cap_reached": tcp.byte_cap_reached,
        "client_fin": tcp.client_fin,
        "server_fin": tcp.server_fin,
        "reset_by": tcp.reset_by,
    }


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
