"""The structure README's module map promises, checked from the code's own imports.

- ``parsers/`` is pure: it imports nothing of ``sniffer/``.
- ``sniffer/``'s stages depend one way (the map below); the transports are siblings that never import
  each other, and meet only in ``transport/tables.py``.
- No import cycle between modules, and no private name (``_x``) imported from another module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Which stages a stage's modules may import (besides their own stage). report/ holds the frozen
# findings every stage speaks in, so the handshake stage builds on it; run/ wires everything together.
ALLOWED: dict[str, set[str]] = {
    "vocabulary": set(),
    "memo": set(),
    "capture": {"parsers"},
    "report": {"parsers", "vocabulary", "memo", "package"},  # package: __version__
    "stats": {"report"},
    "handshake": {"parsers", "report", "vocabulary", "stats", "memo"},
    "transport": {"parsers", "capture", "handshake", "report", "stats", "vocabulary"},
    "outputs": {"report"},
    "run": {"parsers", "capture", "transport", "handshake", "report", "stats", "vocabulary", "outputs", "package"},
    "__main__": {"run"},
    "package": set(),
}
TRANSPORT_SIBLINGS = {"tcp", "quic", "dtls"}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder in ("parsers", "sniffer"):
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(("helloscope", *parts))
            modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module, names) for every helloscope import of a file; names empty for ``import x``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helloscope"):
            yield node.module, tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names if alias.name.startswith("helloscope"))


def _stage(module: str) -> str:
    parts = module.split(".")
    if parts[1] == "parsers":
        return "parsers"
    return parts[2] if len(parts) > 2 else "package"


def _target(module: str, name: str) -> str:
    """``from package import module`` names a module; anything else names a member of ``module``."""
    candidate = f"{module}.{name}"
    return candidate if candidate in MODULES else module


def test_the_map_covers_every_stage() -> None:
    stages = {_stage(module) for module in MODULES if module.startswith("helloscope.sniffer")}
    assert stages <= set(ALLOWED), f"stages missing from ALLOWED: {stages - set(ALLOWED)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_map(module: str) -> None:
    stage = _stage(module)
    for imported, names in _imports(MODULES[module]):
        for target in {_target(imported, name) for name in names} or {imported}:
            other = _stage(target)
            if stage == "parsers":
                assert other == "parsers", f"{module} (pure) imports {target}"
            elif other != stage:
                assert other in ALLOWED[stage], f"{module} ({stage}) imports {target} ({other})"
            if stage == other == "transport":
                mine, theirs = module.split(".")[-1], target.split(".")[-1]
                assert not (mine in TRANSPORT_SIBLINGS and theirs in TRANSPORT_SIBLINGS and mine != theirs), (
                    f"transport {mine} imports its sibling {theirs}"
                )


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_a_module(module: str) -> None:
    package = module.rsplit(".", 1)[0]
    for imported, names in _imports(MODULES[module]):
        if imported == package:
            continue  # a package's private module (the compiled _core) is its own modules' business
        private = [
            name
            for name in names
            if name.startswith("_") and not name.endswith("__") and _target(imported, name) == imported
        ]
        assert not private, f"{module} imports private {private} from {imported}"


def test_no_import_cycle() -> None:
    graph = {
        module: {
            target
            for imported, names in _imports(path)
            for target in ({_target(imported, name) for name in names} or {imported})
            if target in MODULES and target != module
        }
        for module, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
