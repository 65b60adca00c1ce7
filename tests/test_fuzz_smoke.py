"""The fuzz harnesses in fuzz/ stay runnable: every seed replays cleanly, and each target fuzzes briefly.

The long runs are ``make fuzz``; here each target gets about two seconds of atheris, enough to catch a
harness that no longer imports or a parser change that crashes on its real-message seeds.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.seeds import generate
from fuzz.targets import TARGETS, check
from tests.helpers import REPO

SMOKE_SECONDS = os.environ.get("HELLOSCOPE_FUZZ_SMOKE_SECONDS", "2")


@pytest.fixture(scope="module")
def seed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeds")
    generate(root)  # the bundled fixtures only: a fraction of a second
    return root


def test_every_target_has_real_seeds(seed_root: Path):
    # sslv2_hello has no SSLv2 hello among the fixtures (the corpus has some); every other target does.
    empty = {name for name in TARGETS if not any((seed_root / name).iterdir())}
    assert empty <= {"sslv2_hello"}, empty


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_replay_without_a_finding(seed_root: Path, name: str):
    for seed in sorted((seed_root / name).iterdir()):
        check(TARGETS[name], seed.read_bytes())


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris is not installed (pip install -e '.[fuzz]')"
)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_fuzzes_briefly_without_a_finding(seed_root: Path, tmp_path: Path, name: str):
    done = subprocess.run(
        [sys.executable, "-m", "fuzz.run", name, SMOKE_SECONDS, f"-artifact_prefix={tmp_path}/", "-seed=1"],
        cwd=REPO,
        env={**os.environ, "FUZZ_SEEDS": str(seed_root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done " in done.stderr
