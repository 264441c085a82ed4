"""Shared fixtures: paths to ../shared/data, an isolated offline environment, a tiny synthetic set, and
tiny models trained once per test session and shared by every module's tests; and, registered from
their own modules (``pytest_plugins``), pipeline.process's (process_fixtures.py) and the bridge's
servers (servers.py).

Tests that train or build (through a fixture below, or in their own body) are marked ``slow``
automatically by ``pytest_collection_modifyitems``: ``pytest -m "not slow"`` is the fast loop.
The shared models and FiftyOne datasets are read-only for tests: a test that changes one fails (it
copies the weights or clones the dataset first).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QUADRATSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def _start_mongod(folder: Path) -> tuple[subprocess.Popen, str]:
    """FiftyOne's bundled ``mongod`` serving ``folder`` on a free loopback port, started in the
    background: (the process, its ``mongodb://`` address).

    The session's own server: FiftyOne's database service would attach to any mongod of this user
    that is already running (another test session, an open App) and that server goes when its
    session ends and removes its folder, taking every attached session's database with it.
    """
    spec = importlib.util.find_spec("fiftyone")
    mongod = Path(next(iter(spec.submodule_search_locations))) / "db" / "bin" / "mongod"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (folder / "log").mkdir(parents=True, exist_ok=True)
    args = [str(mongod), "--dbpath", str(folder), "--logpath", str(folder / "log" / "mongo.log")]
    args += [
        "--port",
        str(port),
        "--bind_ip",
        "127.0.0.1",
        "--nounixsocket",
        "--wiredTigerCacheSizeGB",
        "0.25",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=60000"


# Offline switches before any framework import, with caches inside the test session, and a
# FiftyOne database server of the session's own (never the user's, nor another session's).
_CACHE = Path(os.environ.setdefault("QUADRATSEG_TEST_CACHE", str(REPO / ".cache" / "tests")))
_FIFTYONE_DB = Path(tempfile.mkdtemp(prefix="quadratseg-test-fodb-"))
_MONGOD, _FIFTYONE_URI = _start_mongod(_FIFTYONE_DB)


def _interrupt(signum, frame):
    """SIGTERM (``timeout``, CI) ends the run like Ctrl-C: pytest still tears down and finishes the
    session, which stops the session's mongod and removes its folder."""
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt)
from quadratseg.offline import apply_offline_environment  # noqa: E402
from quadratseg.settings import Settings  # noqa: E402

apply_offline_environment(
    Settings(cache_dir=_CACHE, fiftyone_database_dir=_FIFTYONE_DB, fiftyone_database_uri=_FIFTYONE_URI)
)
os.environ["FIFTYONE_DATABASE_NAME"] = f"quadratseg_test_{uuid.uuid4().hex[:12]}"

# Fixtures kept in modules of their own, for every test module to ask for by name (never imported
# from another test module): pipeline.process's photos, stand-in weights and command, and the bridge's
# real Redis and PostgreSQL servers.
pytest_plugins = ["process_fixtures", "servers"]


# --- slow: what trains or builds, excluded from the fast loop (pytest -m "not slow") ----------------

# Fixtures that train a model or build something big: a test using one, directly or through another
# fixture, is slow. Keys are fixture names; a module's own fixture is named with its file.
SLOW_FIXTURES = frozenset(
    {
        "tiny_seg_model",
        "tiny_grid_model",
        "tiny_corner_model",
        "tiny_mmseg_model",
        "test_coral_seg_yolo_evaluate.py::family_model",  # 120 YOLO epochs
        "test_dinov2_mmseg.py::trained",  # two MMSeg trainings
        "test_dinov2_training.py::family_run",  # an MMSeg training
        "test_docs.py::site",  # the mkdocs --strict build
    }
)
# Tests that train, build or run a whole chain of processes in their own body, where no fixture shows
# it (file::name; a parametrized test counts whole). Each takes 7 s or more on 2 shared cores.
SLOW_TESTS = frozenset(
    {
        "test_demo.py::test_demo_writes_summary_and_report",  # the whole demo: every stage trains
        "test_grid_pose_detection.py::test_the_train_cli_leaves_the_card_beside_the_weights",  # trains
        "test_dinov2_checkpoints.py::test_a_training_checkpoint_loads_without_unrestricted_unpickling",
        "test_dinov2_checkpoints.py::test_a_pickle_with_a_payload_is_refused_unless_trusted",
        "test_cvat_xml_thirdparty.py::test_masks_file_pulls_every_shape",  # every mask of a real export
        "test_cvat_server_pull_push.py::test_wrong_credentials_timeouts_and_retries",  # waits out time-outs
        "test_bridge_chain.py::test_cvat_down_during_the_upload_leaves_no_half_written_annotations",
        "test_bridge_chain.py::test_detection_again_replaces_its_own_shapes_and_never_manual_ones",
        "test_bridge_chain.py::test_a_job_failed_after_an_unclear_create_resumes_without_a_second_copy",
        "test_bridge_chain.py::test_a_relabelled_or_deleted_auto_shape_keeps_its_frame_the_annotators",
        "test_bridge_chain.py::test_grid_removal_of_a_1920_px_quadrat_works_with_default_settings",
        "test_bridge_chain.py::test_a_500_frame_job_is_acknowledged_at_once_and_survives_a_restart",
        "test_bridge_chain.py::test_a_review_loop_never_puts_auto_shapes_on_an_annotators_corrections",
        "test_fiftyone_app.py::test_the_app_server_serves_the_declared_skeletons",  # the App's server
        # 30 varied-world renders and their refinements
        "test_frame_check.py::test_the_frame_check_finds_frames_and_refuses_quadrats_where_there_is_none",
    }
)


def _fixture_keys(item: pytest.Item) -> set[str]:
    """The fixtures a test uses (its whole closure), each as its name and as ``file::name`` of the file
    that defines it."""
    keys = set(item.fixturenames)
    info = getattr(item, "_fixtureinfo", None)
    for name, defs in (info.name2fixturedefs if info else {}).items():
        module = getattr(defs[-1].func, "__module__", "") or ""
        keys.add(f"{module.rsplit('.', 1)[-1]}.py::{name}")
    return keys


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that uses a training or building fixture, or is a known heavy test."""
    for item in items:
        test_key = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        if test_key in SLOW_TESTS or SLOW_FIXTURES & _fixture_keys(item):
            item.add_marker(pytest.mark.slow)


# --- the session's shared fixtures are read-only for tests ------------------------------------------

SHARED_FIXTURES = frozenset(
    {"synthetic_set", "coral_dataset", "pose_datasets", "tiny_seg_model", "tiny_grid_model"}
    | {"tiny_corner_model", "tiny_mmseg_model"}
)
# fixture name -> the folders it built, or the FiftyOne datasets it pulled (filled as they are made)
_SHARED_FOLDERS: dict[str, list[Path]] = {}
_SHARED_DATASETS: dict[str, list[str]] = {}


def _folder_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root``: relative path -> (size in bytes, modification time in ns)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _dataset_state(name: str) -> tuple:
    """A FiftyOne dataset's sample count, fields and last changes (of the dataset and of its samples)."""
    import fiftyone as fo

    dataset = fo.load_dataset(name)
    dataset.reload()
    return (
        len(dataset),
        sorted(dataset.get_field_schema()),
        dataset.last_modified_at,
        dataset.max("last_modified_at"),
    )


def _shared_state(fixture: str) -> dict[str, object]:
    state: dict[str, object] = {}
    for root in _SHARED_FOLDERS.get(fixture, []):
        state.update({f"{root.name}/{k}": v for k, v in _folder_state(root).items()})
    for name in _SHARED_DATASETS.get(fixture, []):
        state[f"dataset {name}"] = _dataset_state(name)
    return state


@pytest.fixture(autouse=True)
def _shared_fixtures_stay_unchanged(request):
    """Fails a test that changed a session-shared fixture (a file written, removed or touched in its
    folders, a sample or field of its FiftyOne datasets): such a test copies or clones first."""
    watched = [n for n in request.fixturenames if n in SHARED_FIXTURES]
    for name in watched:  # made (and registered) before the first look
        request.getfixturevalue(name)
    before = {n: _shared_state(n) for n in watched}
    yield
    changes = []
    for name in watched:
        old, new = before[name], _shared_state(name)
        if old != new:
            keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            changes.append(f"{name}: {', '.join(keys[:10])}")
    assert not changes, (
        "the test changed the session's shared fixtures (copy the files or clone the dataset first): "
        + "; ".join(changes)
    )


def pytest_sessionfinish(session, exitstatus):
    """Stop the session's mongod and remove its database folder."""
    import shutil
    import sys

    if "fiftyone" in sys.modules:
        import fiftyone.core.odm.database as fodb

        fodb._disconnect()
    _MONGOD.terminate()  # mongod shuts down cleanly on SIGTERM
    try:
        _MONGOD.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _MONGOD.kill()
        _MONGOD.wait()
    shutil.rmtree(_FIFTYONE_DB, ignore_errors=True)


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
    _SHARED_FOLDERS["synthetic_set"] = [out]
    return generate_dataset(
        out, SynthConfig(images=6, seed=0, size=256, min_colonies=4, max_colonies=6), workers=1
    )


@pytest.fixture
def cvat_server(shared_data):
    """The CVAT stand-in on 127.0.0.1 (user ``admin`` / ``admin-password``, token ``test-token``)."""
    from loopback.cvat_standin import CvatServer

    server = CvatServer(shared_data).start()
    yield server
    server.stop()
    assert not server.violations, "responses or requests that break CVAT's schema:\n" + "\n".join(
        server.violations[:20]
    )


@pytest.fixture
def cvat_settings(cvat_server, tmp_path):
    """Settings pointing at the test server, with quick retries; a time-out a loaded machine never
    reaches (a test of time-outs sets its own)."""
    return Settings(
        cvat_host=cvat_server.url,
        cvat_username="admin",
        cvat_password="admin-password",
        cvat_timeout_s=30.0,
        cvat_retries=1,
        media_dir=tmp_path / "media",
    )


@pytest.fixture
def dataset_name():
    """A unique FiftyOne dataset name, deleted (with its staging copy) after the test."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    import fiftyone as fo

    for candidate in (name, name + ".pulling"):
        if fo.dataset_exists(candidate):
            fo.delete_dataset(candidate)


@pytest.fixture(scope="session")
def coral_dataset(synthetic_set, tmp_path_factory):
    """The synthetic set's segmentation export pulled into a FiftyOne dataset, once per session and
    read-only for tests (a test that tags, edits or adds fields works on ``coral_dataset.clone(...)``)."""
    import fiftyone as fo

    from data_engineering.create_fiftyone_dataset import run_pull

    name = f"seg-{uuid.uuid4().hex[:6]}"
    media = tmp_path_factory.mktemp("media")
    run_pull(
        name,
        "xml",
        str(synthetic_set / "cvat_exports" / "segmentation"),
        dataset_name=name,
        settings=Settings(media_dir=media),
    )
    _SHARED_FOLDERS["coral_dataset"], _SHARED_DATASETS["coral_dataset"] = [media], [name]
    yield fo.load_dataset(name)
    fo.delete_dataset(name)


# --- tiny trained models (mechanics, not accuracy), trained once per session ---------------------
# Read-only for tests: a test that writes beside the weights (an export, a model card) copies them first.


@pytest.fixture(scope="session")
def tiny_seg_model(coral_dataset, tmp_path_factory):
    """A YOLO11n-seg trained for one epoch at 64 px on the main families: (weights, data.yaml, summary)."""
    from tiny_models import train_family_seg_model

    root = tmp_path_factory.mktemp("seg")
    _SHARED_FOLDERS["tiny_seg_model"] = [root]
    return train_family_seg_model(coral_dataset, root, epochs=1, imgsz=64)


@pytest.fixture(scope="session")
def pose_datasets(synthetic_set, tmp_path_factory):
    """FiftyOne datasets of the synthetic corner and grid exports, once per session and read-only for
    tests (deleted afterwards)."""
    import fiftyone as fo

    from data_engineering.create_fiftyone_dataset import run_pull

    media = tmp_path_factory.mktemp("media")
    names = {}
    for task, folder in (("gridcorners", "corners"), ("gridpose", "grid")):
        name = f"pose-{folder}-{uuid.uuid4().hex[:6]}"
        run_pull(
            name,
            "xml",
            str(synthetic_set / "cvat_exports" / folder),
            dataset_name=name,
            settings=Settings(media_dir=media),
        )
        names[task] = name
    _SHARED_FOLDERS["pose_datasets"], _SHARED_DATASETS["pose_datasets"] = [media], list(names.values())
    yield names
    for name in names.values():
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def train_tiny_pose(task_name: str, dataset: str, root: Path) -> Path:
    """A pose model of ``task_name`` trained for one epoch at 64 px on a FiftyOne dataset."""
    import fiftyone as fo

    from grid_pose_detection.prepare_data import write_pose_layout
    from grid_pose_detection.tasks import get_task
    from quadratseg.yolo_train import load_experiment, train_yolo

    task = get_task(task_name)
    write_pose_layout(task, fo.load_dataset(dataset), root / "layout")
    config = load_experiment(
        task.config, {"epochs": 1, "imgsz": 64, "batch": 2, "workers": 0, "plots": False}
    )
    run = train_yolo(config, root / "layout" / "data.yaml", root / "runs", task_name, from_scratch=True)
    return Path(run["best"])


@pytest.fixture(scope="session")
def tiny_grid_model(pose_datasets, tmp_path_factory):
    """A gridpose model trained for one epoch at 64 px, and its folder."""
    root = tmp_path_factory.mktemp("pose")
    _SHARED_FOLDERS["tiny_grid_model"] = [root]
    return train_tiny_pose("gridpose", pose_datasets["gridpose"], root), root


@pytest.fixture(scope="session")
def tiny_corner_model(pose_datasets, tmp_path_factory):
    """A gridcorners model trained for one epoch at 64 px, and its folder."""
    root = tmp_path_factory.mktemp("corners")
    _SHARED_FOLDERS["tiny_corner_model"] = [root]
    return train_tiny_pose("gridcorners", pose_datasets["gridcorners"], root), root


@pytest.fixture(scope="session")
def tiny_mmseg_model(coral_dataset, tmp_path_factory):
    """The tiny DINOv2 + SegFormer config trained for one CPU epoch on the main families:
    (resolved config, checkpoint, data root)."""
    from DINOv2_mmseg.prepare_data import write_mmseg_layout
    from DINOv2_mmseg.runner import load_config
    from DINOv2_mmseg.train import run_training

    root = tmp_path_factory.mktemp("mmseg")
    _SHARED_FOLDERS["tiny_mmseg_model"] = [root]
    write_mmseg_layout(coral_dataset, root / "data", level="main_family")
    options = {
        "train_cfg.max_epochs": 1,
        "train_cfg.val_interval": 1,
        "default_hooks.checkpoint.interval": 1,
        "default_hooks.logger.interval": 1,
        "param_scheduler": [],
    }
    config = REPO / "DINOv2_mmseg" / "configs" / "dinov2_tiny_segformer_cpu.py"
    run_training(load_config(config, options, str(root / "data")), root / "work", seed=0, from_scratch=True)
    return root / "work" / config.name, root / "work" / "epoch_1.pth", root / "data"
