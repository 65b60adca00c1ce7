"""Two hosts in network namespaces joined by a veth pair, for tests that need traffic on a real link.

Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range), never from the private ranges, so a
namespace can never be mistaken for, or route to, a real network. Only root can make namespaces; the
``veth_link`` fixture skips cleanly elsewhere.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

SERVER_ADDRESS = "198.18.0.1"
CLIENT_ADDRESS = "198.18.0.2"
PREFIX = 24
_serial = itertools.count()


@dataclass(frozen=True, slots=True)
class Host:
    """One end of the link: its namespace, its veth interface and its address."""

    namespace: str
    interface: str
    address: str

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *command]

    def run(self, *command: str, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*command), capture_output=True, text=True, timeout=timeout, **kwargs)

    def popen(self, *command: str, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(*command), **kwargs)


@dataclass(frozen=True, slots=True)
class Link:
    server: Host
    client: Host


def namespaces_unavailable() -> str | None:
    """Why this machine cannot make namespaces for the tests, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 is not installed (.ci/run installs it)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def veth_link() -> Iterator[Link]:
    """Make two namespaces joined by a veth pair, both ends up with their addresses; remove them after."""
    tag = f"hs{os.getpid() % 100000}x{next(_serial)}"
    server = Host(f"{tag}s", f"{tag}s0", SERVER_ADDRESS)
    client = Host(f"{tag}c", f"{tag}c0", CLIENT_ADDRESS)
    made: list[str] = []
    try:
        for host in (server, client):
            _ip("netns", "add", host.namespace)
            made.append(host.namespace)
        _ip("link", "add", server.interface, "netns", server.namespace, "type", "veth",
            "peer", "name", client.interface, "netns", client.namespace)  # fmt: skip
        for host in (server, client):
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/{PREFIX}", "dev", host.interface)
            _ip("-n", host.namespace, "link", "set", host.interface, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield Link(server, client)
    finally:
        for namespace in made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


@pytest.fixture
def netns_link() -> Iterator[Link]:
    """A fresh pair of namespaced hosts on one veth link, or skip where namespaces cannot be made."""
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with ExitStack() as stack:
        try:
            link = stack.enter_context(veth_link())
        except subprocess.CalledProcessError as error:
            pytest.skip(f"cannot make network namespaces here: {error.stderr.strip()}")
        yield link
