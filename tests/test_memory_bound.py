"""--max-memory: what connections hold is accounted, and past the bound the oldest are reported and dropped.

Real packets rewritten (tests/test_robustness.py's fixture): many clients each send the fixture's
ClientHello and get no answer, so every flow keeps its stream state.
"""

from __future__ import annotations

from helloscope.sniffer.transport.tcp import FLOW_COST

from tests.helpers import TableRun
from tests.test_robustness import HELLO_INDEX, PACKETS, _flow

HELLO_FLOWS = 200


def _hello_flood(run: TableRun) -> list[int]:
    """Feed the flood; the table's accounted memory after each packet."""
    memory = []
    for port in range(HELLO_FLOWS):
        for timestamp, segment in _flow(port, PACKETS[: HELLO_INDEX + 1]):
            run.table.segment(timestamp, segment)
            memory.append(run.table.tcp.memory)
    return memory


def test_the_bound_reports_and_drops_the_oldest_flows_and_holds():
    bound = 60 * FLOW_COST
    run = TableRun(max_memory=bound)
    memory = _hello_flood(run)
    # Shedding happens before the next packet is looked at: at most one flow's growth above the bound.
    assert max(memory) <= bound + FLOW_COST + len(PACKETS[HELLO_INDEX][1].payload) * 2
    evicted = [event for event in run.events if event["helloscope"]["end_reason"] == "memory_cap"]
    assert run.stats.memory_evictions == len(evicted) > HELLO_FLOWS // 2
    run.table.flush()
    # Every hello is reported exactly once, whether the bound or the end of input reported it.
    ports = [event["source"]["port"] for event in run.events]
    assert len(ports) == len(set(ports)) == HELLO_FLOWS
    assert all(event["helloscope"]["client_hello"] is not None for event in run.events)


def test_the_default_bound_leaves_such_a_flood_alone_and_accounts_every_flow():
    run = TableRun()
    memory = _hello_flood(run)
    assert run.stats.memory_evictions == 0
    assert memory[-1] >= HELLO_FLOWS * FLOW_COST  # every flow is accounted, at least at its fixed cost
    run.table.flush()
    assert run.table.tcp.memory == 0  # finished flows give their bytes back
    assert len(run.events) == HELLO_FLOWS
