"""Shared fixtures: paths to ../shared/data, an isolated offline environment, a tiny synthetic set."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QUADRATSEG_SHARED_DATA", REPO.parent / "shared" / "data"))

# Offline switches before any framework import, with caches inside the test session, and a
# FiftyOne database of the session's own (never the user's).
_CACHE = Path(os.environ.setdefault("QUADRATSEG_TEST_CACHE", str(REPO / ".cache" / "tests")))
_FIFTYONE_DB = Path(tempfile.mkdtemp(prefix="quadratseg-test-fodb-"))
from quadratseg.offline import apply_offline_environment  # noqa: E402
from quadratseg.settings import Settings  # noqa: E402

apply_offline_environment(Settings(cache_dir=_CACHE, fiftyone_database_dir=_FIFTYONE_DB))
os.environ.pop("FIFTYONE_DATABASE_URI", None)
# FiftyOne attaches to any mongod of this user that is already running (an open App, a demo), whatever
# its folder: a database name of the session's own keeps the tests out of the user's datasets even then.
os.environ["FIFTYONE_DATABASE_NAME"] = f"quadratseg_test_{uuid.uuid4().hex[:12]}"


def pytest_sessionfinish(session, exitstatus):
    """Stop the session's mongod (if FiftyOne started one) and remove its database folder."""
    import shutil
    import sys

    if "fiftyone" in sys.modules:
        try:
            import fiftyone.core.odm.database as fodb

            fodb.get_db_client().drop_database(os.environ["FIFTYONE_DATABASE_NAME"])
            fodb._disconnect()
            service = getattr(fodb, "_db_service", None)
            if service is not None:
                service.stop()
        except Exception:  # best effort: the folder is removed anyway
            pass
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
    return generate_dataset(
        out, SynthConfig(images=6, seed=0, size=256, min_colonies=4, max_colonies=6), workers=1
    )


@pytest.fixture
def cvat_server(shared_data):
    """The CVAT stand-in on 127.0.0.1 (user ``admin`` / ``admin-password``, token ``test-token``)."""
    from bridge.cvat_standin import CvatServer

    server = CvatServer(shared_data).start()
    yield server
    server.stop()
    assert not server.violations, "responses or requests that break CVAT's schema:\n" + "\n".join(
        server.violations[:20]
    )


@pytest.fixture
def cvat_settings(cvat_server, tmp_path):
    """Settings pointing at the test server, with quick retries."""
    return Settings(
        cvat_host=cvat_server.url,
        cvat_username="admin",
        cvat_password="admin-password",
        cvat_timeout_s=2.0,
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


@pytest.fixture(scope="module")
def coral_dataset(synthetic_set, tmp_path_factory):
    """The synthetic set's segmentation export pulled into a FiftyOne dataset (one per test module)."""
    import fiftyone as fo

    from data_engineering.create_fiftyone_dataset import run_pull

    name = f"seg-{uuid.uuid4().hex[:6]}"
    run_pull(
        name,
        "xml",
        str(synthetic_set / "cvat_exports" / "segmentation"),
        dataset_name=name,
        settings=Settings(media_dir=tmp_path_factory.mktemp("media")),
    )
    yield fo.load_dataset(name)
    fo.delete_dataset(name)


# --- tiny trained models (mechanics, not accuracy), one per test module that asks -------------


@pytest.fixture(scope="module")
def tiny_seg_model(coral_dataset, tmp_path_factory):
    """A YOLO11n-seg trained for one epoch at 64 px on the main families: (weights, data.yaml, summary)."""
    from tiny_models import train_family_seg_model

    return train_family_seg_model(coral_dataset, tmp_path_factory.mktemp("seg"), epochs=1, imgsz=64)


@pytest.fixture(scope="module")
def pose_datasets(synthetic_set, tmp_path_factory):
    """FiftyOne datasets of the synthetic corner and grid exports (deleted afterwards)."""
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


@pytest.fixture(scope="module")
def tiny_grid_model(pose_datasets, tmp_path_factory):
    """A gridpose model trained for one epoch at 64 px, and its folder."""
    root = tmp_path_factory.mktemp("pose")
    return train_tiny_pose("gridpose", pose_datasets["gridpose"], root), root


@pytest.fixture(scope="module")
def tiny_corner_model(pose_datasets, tmp_path_factory):
    """A gridcorners model trained for one epoch at 64 px, and its folder."""
    root = tmp_path_factory.mktemp("corners")
    return train_tiny_pose("gridcorners", pose_datasets["gridcorners"], root), root


@pytest.fixture(scope="module")
def tiny_mmseg_model(coral_dataset, tmp_path_factory):
    """The tiny DINOv2 + SegFormer config trained for one CPU epoch on the main families:
    (resolved config, checkpoint, data root)."""
    from DINOv2_mmseg.prepare_data import write_mmseg_layout
    from DINOv2_mmseg.runner import load_config
    from DINOv2_mmseg.train import run_training

    root = tmp_path_factory.mktemp("mmseg")
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
