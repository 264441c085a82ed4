"""The suite's own contract: tiny models trained once per session, ``slow`` on every test that trains or
builds (so ``pytest -m "not slow"`` is a fast loop), shared fixtures that a test cannot change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"

# The fixtures that train a model or build something big; each test using one (directly or through
# another fixture) is slow.
TRAINING_FIXTURES = ("tiny_seg_model", "tiny_grid_model", "tiny_corner_model", "tiny_mmseg_model")
# Tests known to train, build or resolve in their own body (the demo, the docs build, torchrun, pip).
KNOWN_HEAVY = (
    "tests/test_demo.py::test_demo_writes_summary_and_report",
    "tests/test_docs.py::test_the_site_builds_strictly_with_every_guide_and_the_api_reference",
    "tests/test_dinov2_training.py::test_torchrun_with_the_pytorch_launcher_trains_on_cpu_with_gloo",
    "tests/test_real_photos.py::test_handlers_answer_a_real_photo",
)

COLLECT = ("--continue-on-collection-errors", "-p", "no:cacheprovider")
# A plugin for the inner pytest: writes, for every selected test, its fixtures and their scopes.
DUMP_PLUGIN = """
import json, os

def pytest_collection_finish(session):
    rows = {}
    for item in session.items:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs if info else {}
        rows[item.nodeid] = {
            "fixtures": list(item.fixturenames),
            "scopes": {name: defs[name][-1].scope for name in item.fixturenames if name in defs},
            "slow": item.get_closest_marker("slow") is not None,
        }
    with open(os.environ["SUITE_DUMP"], "w") as f:
        json.dump(rows, f)
"""


def collect(tmp_path: Path, *args: str) -> dict[str, dict]:
    """The suite as pytest itself selects it (``--collect-only`` plus ``args``): node id -> fixtures,
    their scopes and whether the test is marked slow."""
    (tmp_path / "suite_dump_plugin.py").write_text(DUMP_PLUGIN)
    dump = tmp_path / "suite.json"
    env = {**os.environ, "SUITE_DUMP": str(dump), "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "suite_dump_plugin",
            *args,
            *COLLECT,
            "tests",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # a test file that does not import (work in progress elsewhere) is not this check's business
    assert dump.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(dump.read_text())


def slow_key(nodeid: str) -> str:
    """``tests/test_x.py::test_y[case]`` -> ``test_x.py::test_y`` (how conftest's SLOW_TESTS names tests)."""
    path, name = nodeid.split("::", 1)
    return f"{Path(path).name}::{name.split('[')[0]}"


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> dict[str, dict]:
    return collect(tmp_path_factory.mktemp("suite"))


@pytest.fixture(scope="module")
def fast_loop(suite) -> dict[str, dict]:
    """What ``pytest -m "not slow"`` selects: the tests without the slow mark."""
    return {n: row for n, row in suite.items() if not row["slow"]}


def test_the_tiny_models_and_their_datasets_are_built_once_per_session(suite):
    shared = (*TRAINING_FIXTURES, "coral_dataset", "pose_datasets", "synthetic_set")
    users = {name: [n for n, row in suite.items() if name in row["fixtures"]] for name in shared}
    assert {name: len(ids) > 0 for name, ids in users.items()} == dict.fromkeys(shared, True)
    scopes = {(name, suite[n]["scopes"][name]) for name, ids in users.items() for n in ids}
    assert scopes == {(name, "session") for name in shared}


def test_every_test_that_trains_or_builds_is_outside_the_fast_loop(suite, fast_loop):
    trainers = {n for n, row in suite.items() if set(TRAINING_FIXTURES) & set(row["fixtures"])}
    assert len(trainers) >= 15  # the YOLO, pose, MMSeg, chain, bridge and real-photo tests
    assert all(suite[n]["slow"] for n in trainers)
    assert sorted(trainers & set(fast_loop)) == []
    from conftest import SLOW_TESTS

    listed = {n for n in suite if slow_key(n) in SLOW_TESTS}
    assert sorted(SLOW_TESTS - {slow_key(n) for n in listed}) == []  # each name is a real test
    assert sorted(listed & set(fast_loop)) == []
    assert sorted(set(KNOWN_HEAVY) - set(suite)) == []  # the list names real tests
    assert sorted(set(KNOWN_HEAVY) & set(fast_loop)) == []
    assert len(fast_loop) > len(suite) * 3 // 4  # the fast loop is most of the suite


def test_a_test_that_changes_a_shared_fixture_fails_and_names_it(tmp_path):
    """The real conftest as a plugin of an inner run: writing into the session's synthetic set fails at
    teardown with the fixture and the file named; reading it passes."""
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            def test_reads(synthetic_set):
                assert (synthetic_set / "manifest.json").is_file() or any(synthetic_set.iterdir())

            def test_writes(synthetic_set):
                (synthetic_set / "added.txt").write_text("changed")
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "2 passed, 1 error" in out, out[-3000:]  # test_writes itself passes, its teardown fails
    assert "test_writes" in out and "synthetic_set" in out and "added.txt" in out


SESSION_TEST = """
import os, time
from pathlib import Path


def wait_for(path, seconds=120):
    end = time.time() + seconds
    while not Path(path).exists() and time.time() < end:
        time.sleep(0.2)
    assert Path(path).exists(), path


def test_uses_its_database_around_another_session():
    import fiftyone as fo

    import fiftyone.core.odm.database as fodb

    dataset = fo.Dataset()
    dataset.add_sample(fo.Sample(filepath="/first.jpg"))
    served_from = fodb.get_db_client().admin.command("getCmdLineOpts")["parsed"]["storage"]["dbPath"]
    assert served_from == os.environ["FIFTYONE_DATABASE_DIR"]  # the session's own mongod
    Path(os.environ["READY"]).write_text("ready")
    wait_for(os.environ["WAIT_FOR"])
    dataset.add_sample(fo.Sample(filepath="/second.jpg"))
    assert len(fo.load_dataset(dataset.name)) == 2
"""


@pytest.mark.slow  # two pytest sessions, each with its own mongod
def test_two_sessions_at_once_keep_their_own_fiftyone_databases(tmp_path):
    """Two pytest sessions on one machine (two people, or a run beside the fast loop): the first one
    ends while the second still uses FiftyOne, and the second is not affected."""
    (tmp_path / "test_session.py").write_text(SESSION_TEST)
    base = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "conftest",
        "-p",
        "no:cacheprovider",
        "test_session.py",
    ]
    pythonpath = os.pathsep.join([str(TESTS), str(REPO)])

    def start(name: str, wait_for: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": pythonpath, "READY": str(tmp_path / f"{name}.ready")}
        env["WAIT_FOR"] = str(wait_for)
        log = (tmp_path / f"{name}.log").open("w")
        return subprocess.Popen(base, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    first = start("first", tmp_path / "second.ready")  # starts the database, ends once the second began
    deadline = time.time() + 240
    while not (tmp_path / "first.ready").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    second = start("second", tmp_path / "first.done")  # goes on after the first session has ended
    assert first.wait(timeout=240) == 0, (tmp_path / "first.log").read_text()[-3000:]
    (tmp_path / "first.done").write_text("done")
    assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()[-3000:]


def ci_make_calls(script: Path, tmp_path: Path) -> list[str]:
    """The ``make`` commands a CI script runs, in order (``make`` replaced by a recorder on PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    (bin_dir / "make").write_text(f'#!/bin/sh\necho "make $*" >> {calls}\n')
    (bin_dir / "make").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def test_ci_runs_the_linters_then_the_whole_suite(tmp_path):
    assert ci_make_calls(REPO / ".ci" / "run", tmp_path) == ["make lint", "make test"]
    dry = subprocess.run(["make", "-n", "lint", "test"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if "-m ruff" in line or "-m pytest" in line]
    assert [c.split(" -m ", 1)[1] for c in commands] == [
        "ruff check .",
        "ruff format --check .",
        "pytest --durations=15",
    ]


@pytest.mark.slow  # a pytest session stopped from outside
def test_a_session_stopped_with_sigterm_stops_its_mongod_and_removes_its_folder(tmp_path):
    """``timeout`` (or CI) ends a run with SIGTERM: the session's mongod and database folder go with it."""
    import signal

    (tmp_path / "test_sleep.py").write_text(
        "import os, time\nfrom pathlib import Path\n\n\ndef test_sleeps():\n"
        "    Path(os.environ['READY']).write_text(os.environ['FIFTYONE_DATABASE_DIR'])\n    time.sleep(120)\n"
    )
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "READY": str(ready)}
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", "test_sleep.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.2)
    folder = Path(ready.read_text())
    assert folder.is_dir()
    session.send_signal(signal.SIGTERM)
    session.wait(timeout=60)
    mongods = subprocess.run(["pgrep", "-f", f"mongod --dbpath {folder}"], capture_output=True, text=True)
    assert (mongods.stdout.strip(), folder.exists()) == ("", False)
