"""Shared fixtures: paths to ../shared/data, an isolated offline environment, a tiny synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QUADRATSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

# Offline switches before any framework import, with caches inside the test session.
_CACHE = Path(os.environ.setdefault("QUADRATSEG_TEST_CACHE", str(REPO / ".cache" / "tests")))
from quadratseg.offline import apply_offline_environment  # noqa: E402
from quadratseg.settings import Settings  # noqa: E402

apply_offline_environment(Settings(cache_dir=_CACHE))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real third-party files); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the conformance tests need the shared data folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic quadrats at 256 px (seed 0), generated once per session."""
    from quadratseg.synth import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("synth") / "set"
    return generate_dataset(
        out, SynthConfig(images=6, seed=0, size=256, min_colonies=4, max_colonies=6), workers=1
    )
