"""Fixtures of the pipeline.process tests, registered for the whole suite by tests/conftest.py
(``pytest_plugins``): raw synthetic photos with their truth, weights files whose ultralytics model is a
stand-in, and the command run in this process."""

from __future__ import annotations

import shutil

import pytest

# The project's modules are imported in the fixtures: tests/conftest.py loads this module before any
# test module, and every session (whichever tests it runs) would otherwise pay for them.


@pytest.fixture
def raw_photos(synthetic_set, tmp_path):
    """The raw photos in site/ sub-folders, one name with spaces and ###, and the truth in read order."""
    from grid_inpainting.inpaint import OpenCVBackend
    from quadratseg.synth.dataset import export_image_path, load_truth

    folder = tmp_path / "photos"
    truths = load_truth(synthetic_set)
    keyed = []
    for i, t in enumerate(truths):
        name = t["name"] if i else "quadrat ### 1.jpg"
        target = folder / t["name"].split("_")[0] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(
            export_image_path(synthetic_set / "cvat_exports" / "corners", t["subset"], t["name"]), target
        )
        keyed.append((target.relative_to(folder).as_posix(), t))
    keyed.sort()
    return folder, [t for _, t in keyed], [k for k, _ in keyed], OpenCVBackend("telea")


@pytest.fixture
def fake_weights(monkeypatch, tmp_path):
    """Weights files whose ultralytics model is a stand-in: ``add(name, model)`` writes
    ``<name>/best.pt`` (distinct bytes) and returns its path; building it returns ``model``."""
    import quadratseg.yolo_train

    models = {}

    def add(name, model, payload=b""):
        path = tmp_path / "weights" / name / "best.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights of " + name.encode() + payload)
        models[str(path)] = model
        return path

    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: models[str(weights)])
    return add


@pytest.fixture
def one_photo(raw_photos, tmp_path):
    """One raw photo alone in a folder (``site/name.jpg``), with its truth."""
    folder, truths, keys, _ = raw_photos
    target = tmp_path / "one" / keys[1]
    target.parent.mkdir(parents=True)
    shutil.copy(folder / keys[1], target)
    return tmp_path / "one", truths[1], keys[1]


@pytest.fixture
def seg(fake_weights):
    """A colony model's weights whose model is a stand-in (finds nothing)."""
    from chain_standins import FakeSegModel

    return str(fake_weights("seg", FakeSegModel()))


@pytest.fixture
def photos(raw_photos, tmp_path):
    """Three raw photos in one folder (``Q0.jpg``..``Q2.jpg``); their paths."""
    folder, _truths, keys, _ = raw_photos
    target = tmp_path / "survey"
    target.mkdir()
    paths = []
    for index, key in enumerate(keys[:3]):
        paths.append(target / f"Q{index}.jpg")
        shutil.copy(folder / key, paths[-1])
    return paths


@pytest.fixture
def cli(monkeypatch, caplog):
    """``cli(*arguments)``: ``python -m pipeline.process`` in this process (the stand-in weights
    apply); returns the exit code and the error it logged (one line)."""
    import quadratseg.cli
    from pipeline.process import process

    def run(*arguments: str) -> tuple[int, str]:
        monkeypatch.setattr(quadratseg.cli, "_settings", None)  # the command loads its own
        caplog.clear()
        try:
            quadratseg.cli.run(process, name="quadratseg-process", command=list(arguments))
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code)
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        return code, "\n".join(errors)

    return run
