"""The dotted paths events can have, so that ``--fields`` can refuse a mistyped one.

Written from ``schema/event.schema.json`` and ``schema/stats.schema.json`` (the schemas are not part of an
installed package); tests/test_fields.py holds this list equal to them: after a schema change, print the
new list with ``python -m helloscope.sniffer.report.fields schema/*.schema.json`` and paste it here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final

_WRITTEN = """
    @timestamp destination destination.bytes destination.domain destination.ip destination.port ecs ecs.version
    event event.category event.dataset event.duration event.end event.id event.kind event.module event.outcome
    event.start event.type helloscope helloscope.alerts helloscope.anomalies helloscope.certificate_request
    helloscope.certificate_request.basis helloscope.certificate_request.certificate_authorities
    helloscope.certificate_request.certificate_types helloscope.certificate_request.confidence
    helloscope.certificate_request.echoes_request_mtls helloscope.certificate_request.evidence
    helloscope.certificate_request.seen helloscope.certificate_request.signature_algorithms
    helloscope.client_certificate helloscope.client_certificate.basis helloscope.client_certificate.chain
    helloscope.client_certificate.chain_length helloscope.client_certificate.confidence
    helloscope.client_certificate.evidence helloscope.client_certificate.findings
    helloscope.client_certificate.state helloscope.client_certificate.unreadable helloscope.client_hello
    helloscope.client_hello.alpn helloscope.client_hello.cipher_suites helloscope.client_hello.compression_methods
    helloscope.client_hello.ec_point_formats helloscope.client_hello.ech helloscope.client_hello.ech.aead_id
    helloscope.client_hello.ech.config_id helloscope.client_hello.ech.kdf_id
    helloscope.client_hello.ech.payload_length helloscope.client_hello.ech.type
    helloscope.client_hello.extension_names helloscope.client_hello.extensions helloscope.client_hello.grease
    helloscope.client_hello.ja3_full helloscope.client_hello.ja4 helloscope.client_hello.ja4_o
    helloscope.client_hello.ja4_r helloscope.client_hello.ja4_ro helloscope.client_hello.key_share_groups
    helloscope.client_hello.legacy_version helloscope.client_hello.max_version
    helloscope.client_hello.padding_length helloscope.client_hello.post_handshake_auth
    helloscope.client_hello.pre_shared_key helloscope.client_hello.psk_key_exchange_modes
    helloscope.client_hello.session_id_length helloscope.client_hello.signature_algorithms
    helloscope.client_hello.sslv2 helloscope.client_hello.supported_groups
    helloscope.client_hello.supported_versions helloscope.decryption helloscope.decryption.certificate_verify
    helloscope.decryption.client_finished helloscope.decryption.new_session_tickets
    helloscope.decryption.post_handshake_certificate_request helloscope.decryption.reason
    helloscope.decryption.records helloscope.decryption.server_finished helloscope.decryption.source
    helloscope.decryption.status helloscope.decryption.ticket_flags helloscope.dtls helloscope.dtls.client_datagrams
    helloscope.dtls.conflicting_fragments helloscope.dtls.hello_verify_request helloscope.dtls.malformed_datagrams
    helloscope.dtls.retransmitted_fragments helloscope.dtls.server_datagrams helloscope.dtls.unified_records
    helloscope.end_reason helloscope.flag_outcome helloscope.flag_outcome_evidence helloscope.hello_retry_request
    helloscope.outcome helloscope.outcome_basis helloscope.outcome_confidence helloscope.outcome_evidence
    helloscope.preamble helloscope.preamble.client_bytes helloscope.preamble.protocol
    helloscope.preamble.server_bytes helloscope.quic helloscope.quic.client_initial_packets
    helloscope.quic.connection_close helloscope.quic.connection_close.application
    helloscope.quic.connection_close.error_code helloscope.quic.connection_close.frame_type
    helloscope.quic.connection_close.packet_type helloscope.quic.connection_close.reason
    helloscope.quic.connection_close.sender helloscope.quic.crypto_duplicates helloscope.quic.handshake_packets
    helloscope.quic.original_dcid helloscope.quic.retry helloscope.quic.server_initial_packets
    helloscope.quic.transport_parameters helloscope.quic.undecryptable_initial_packets helloscope.quic.version
    helloscope.quic.version_name helloscope.renegotiation helloscope.request_mtls helloscope.second_client_hello
    helloscope.second_client_hello.alpn helloscope.second_client_hello.cipher_suites
    helloscope.second_client_hello.compression_methods helloscope.second_client_hello.ec_point_formats
    helloscope.second_client_hello.ech helloscope.second_client_hello.ech.aead_id
    helloscope.second_client_hello.ech.config_id helloscope.second_client_hello.ech.kdf_id
    helloscope.second_client_hello.ech.payload_length helloscope.second_client_hello.ech.type
    helloscope.second_client_hello.extension_names helloscope.second_client_hello.extensions
    helloscope.second_client_hello.grease helloscope.second_client_hello.ja3_full helloscope.second_client_hello.ja4
    helloscope.second_client_hello.ja4_o helloscope.second_client_hello.ja4_r helloscope.second_client_hello.ja4_ro
    helloscope.second_client_hello.key_share_groups helloscope.second_client_hello.legacy_version
    helloscope.second_client_hello.max_version helloscope.second_client_hello.padding_length
    helloscope.second_client_hello.post_handshake_auth helloscope.second_client_hello.pre_shared_key
    helloscope.second_client_hello.psk_key_exchange_modes helloscope.second_client_hello.session_id_length
    helloscope.second_client_hello.signature_algorithms helloscope.second_client_hello.sslv2
    helloscope.second_client_hello.supported_groups helloscope.second_client_hello.supported_versions
    helloscope.server_certificate helloscope.server_certificate.chain_length
    helloscope.server_certificate.chain_sha256 helloscope.server_certificate.evidence
    helloscope.server_certificate.unreadable helloscope.server_hello helloscope.server_hello.cipher_suite
    helloscope.server_hello.extensions helloscope.server_hello.ja3s_full helloscope.server_hello.key_share_group
    helloscope.server_hello.legacy_version helloscope.server_hello.pre_shared_key
    helloscope.server_hello.selected_version helloscope.stats helloscope.stats.bytes
    helloscope.stats.connections_with_anomalies helloscope.stats.events_dropped helloscope.stats.events_spooled
    helloscope.stats.events_written helloscope.stats.flow_cap_evictions helloscope.stats.flows_tracked
    helloscope.stats.idle_evictions helloscope.stats.kernel_dropped helloscope.stats.kernel_received
    helloscope.stats.outputs_retried helloscope.stats.packets helloscope.stats.tcp_segments
    helloscope.stats.tls_connections helloscope.stats.undecoded_frames helloscope.tcp
    helloscope.tcp.byte_cap_reached helloscope.tcp.client_bytes helloscope.tcp.client_fin helloscope.tcp.gaps
    helloscope.tcp.out_of_order helloscope.tcp.overlap_conflicts helloscope.tcp.reset_by
    helloscope.tcp.retransmitted helloscope.tcp.server_bytes helloscope.tcp.server_fin helloscope.tls_flags
    helloscope.tls_flags.codepoint helloscope.tls_flags.flags helloscope.tls_flags.malformations
    helloscope.tls_flags.names helloscope.tls_flags.observable log log.file log.file.path network
    network.community_id network.protocol network.transport network.type observer observer.ingress
    observer.ingress.interface observer.ingress.interface.name observer.name observer.product observer.type
    observer.version source source.bytes source.ip source.port tls tls.cipher tls.client tls.client.hash
    tls.client.hash.sha1 tls.client.hash.sha256 tls.client.issuer tls.client.ja3 tls.client.ja4 tls.client.not_after
    tls.client.not_before tls.client.server_name tls.client.subject tls.client.supported_ciphers tls.client.x509
    tls.client.x509.alternative_names tls.client.x509.issuer tls.client.x509.issuer.common_name
    tls.client.x509.issuer.distinguished_name tls.client.x509.not_after tls.client.x509.not_before
    tls.client.x509.public_key_algorithm tls.client.x509.public_key_curve tls.client.x509.public_key_size
    tls.client.x509.serial_number tls.client.x509.signature_algorithm tls.client.x509.subject
    tls.client.x509.subject.common_name tls.client.x509.subject.distinguished_name tls.client.x509.version_number
    tls.curve tls.established tls.next_protocol tls.resumed tls.server tls.server.hash tls.server.hash.sha1
    tls.server.hash.sha256 tls.server.issuer tls.server.ja3s tls.server.not_after tls.server.not_before
    tls.server.subject tls.server.x509 tls.server.x509.alternative_names tls.server.x509.issuer
    tls.server.x509.issuer.common_name tls.server.x509.issuer.distinguished_name tls.server.x509.not_after
    tls.server.x509.not_before tls.server.x509.public_key_algorithm tls.server.x509.public_key_curve
    tls.server.x509.public_key_size tls.server.x509.serial_number tls.server.x509.signature_algorithm
    tls.server.x509.subject tls.server.x509.subject.common_name tls.server.x509.subject.distinguished_name
    tls.server.x509.version_number tls.version tls.version_protocol
"""
KNOWN_FIELDS: Final = frozenset(_WRITTEN.split())
# Objects whose members are open-ended (the stats event's counters grow with new versions).
OPEN_OBJECTS: Final = frozenset({"helloscope.stats"})


def is_known(dotted: str) -> bool:
    return dotted in KNOWN_FIELDS or any(dotted.startswith(prefix + ".") for prefix in OPEN_OBJECTS)


def schema_paths(schema: Mapping[str, Any]) -> set[str]:
    """Every dotted path of object properties in a JSON Schema, through $ref and anyOf/oneOf/allOf."""
    definitions = schema.get("$defs", {})
    found: set[str] = set()

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        if "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, ()):
                walk(branch, prefix)
        for name, child in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            found.add(path)
            walk(child, path + ".")

    walk(schema, "")
    return found


def _print_list(paths: Iterable[str]) -> None:
    import textwrap  # this and json serve the maintainer's command below, not a run

    joined = " ".join(sorted(paths))
    print(textwrap.indent(textwrap.fill(joined, 112, break_long_words=False, break_on_hyphens=False), "    "))


if __name__ == "__main__":
    import json

    every: set[str] = set()
    for name in sys.argv[1:]:
        with open(name, encoding="utf-8") as handle:
            every |= schema_paths(json.load(handle))
    _print_list(every)
