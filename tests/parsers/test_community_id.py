"""Community ID v1 against the specification's own baseline.

Vectors transcribed from corelight/community-id-spec, baseline/baseline_deflt.json (seed 0) at commit
c4ec2bc40d65ddbcbdd642582bf5609797a80772; each flow appears in both directions there and here.
"""

from __future__ import annotations

import ipaddress

import pytest
from helloscope.parsers.community_id import community_id

TCP, UDP, SCTP, RSVP = 6, 17, 132, 46

BASELINE = [
    (TCP, "128.232.110.120", 34855, "66.35.250.204", 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (TCP, "66.35.250.204", 80, "128.232.110.120", 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (UDP, "192.168.1.52", 54585, "8.8.8.8", 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (UDP, "8.8.8.8", 53, "192.168.1.52", 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (
        TCP,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        63943,
        "2607:f8b0:400c:c03::1a",
        25,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (
        TCP,
        "2607:f8b0:400c:c03::1a",
        25,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        63943,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    # Equal ports: only the addresses decide the order.
    (SCTP, "192.168.170.8", 7, "192.168.170.56", 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (SCTP, "192.168.170.56", 7, "192.168.170.8", 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    # A protocol without ports hashes no port fields at all.
    (RSVP, "10.1.12.1", None, "10.1.12.2", None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (RSVP, "10.1.12.2", None, "10.1.12.1", None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
]


@pytest.mark.parametrize(("proto", "src", "sport", "dst", "dport", "expected"), BASELINE)
def test_baseline_vectors(proto: int, src: str, sport: int | None, dst: str, dport: int | None, expected: str) -> None:
    src_ip, dst_ip = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    assert community_id(proto, src_ip, sport, dst_ip, dport) == expected


def test_seed_changes_the_id() -> None:
    flow = (TCP, bytes([10, 0, 0, 1]), 1234, bytes([10, 0, 0, 2]), 443)
    assert community_id(*flow, seed=1) != community_id(*flow)


@pytest.mark.parametrize(
    ("src", "sport", "dst", "dport"),
    [(bytes(4), 1, bytes(16), 2), (bytes(4), 1, bytes(4), None), (bytes(3), 1, bytes(3), 2)],
)
def test_rejects_inconsistent_flows(src: bytes, sport: int | None, dst: bytes, dport: int | None) -> None:
    with pytest.raises(ValueError):
        community_id(TCP, src, sport, dst, dport)
