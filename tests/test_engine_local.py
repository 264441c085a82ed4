"""The local engine: claims on one output folder shared by several runs, and reading and writing
overlapped with the chain (pipeline.claims, pipeline.engine_local)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.chain import ChainModels
from pipeline.claims import PhotoClaims, claim_path
from pipeline.run import EngineOptions, photo_job, process_folder, process_photo
from quadratseg.batch import batch_items
from quadratseg.instances import Instance

REPO = Path(__file__).resolve().parents[1]


class SquareColonies:
    """A segmentation stand-in: one Porites square per photo, its size from the photo's mean
    brightness (so each photo has its own answer whatever order or thread asks)."""

    def __init__(self, delay_s: float = 0.0):
        self.names = {0: "Porites", 1: "Acropora"}
        self.delay_s, self.threads = delay_s, set()

    def predict(self, image):
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)
        side = 20 + int(image.mean()) % 60
        polygon = np.array([[10, 10], [10 + side, 10], [10 + side, 10 + side], [10, 10 + side]], float)
        return [Instance.from_polygons("Porites", 0.8, [polygon], (image.shape[1], image.shape[0]))]


@pytest.fixture
def quadrats(synthetic_set, tmp_path):
    """Twelve warped quadrats (256 px) as site/year/Qn.jpg: the synthetic set's six, twice (the
    second time flipped, so every photo differs)."""
    images = sorted((synthetic_set / "cvat_exports" / "segmentation" / "images").rglob("*.jpg"))
    folder = tmp_path / "survey"
    for index in range(12):
        image = cv2.imread(str(images[index % len(images)]))
        if index >= len(images):
            image = image[:, ::-1]
        target = folder / ("Tiahura" if index % 2 else "Haapiti") / "2020" / f"Q{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
    return folder


def output_files(out: Path) -> dict[str, bytes]:
    """Every output file's bytes by relative path, the per-photo seconds of the records and the
    timing table left out (wall times differ from run to run)."""
    files = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        if not path.is_file() or relative in ("timing.csv",) or relative.startswith(".claims"):
            continue
        data = path.read_bytes()
        if relative.startswith("photos/"):
            record = json.loads(data)
            record.pop("seconds")
            data = json.dumps(record, sort_keys=True).encode()
        files[relative] = data
    return files


def test_the_overlapped_engine_writes_the_bytes_one_photo_after_the_other_writes(quadrats, tmp_path):
    """The outputs of the engine (reader and writer threads) against the photos processed one after
    the other through the same function, file for file."""
    models = ChainModels(SquareColonies())
    out = tmp_path / "engine"
    summary = process_folder(quadrats, out, models, "fp", warp_size=(320, 320))
    assert (summary["processed"], summary["resumed_skipped"], summary["failed"]) == (12, 0, 0)

    sequential = tmp_path / "sequential"
    job = photo_job(sequential, models, "fp", warp_size=(320, 320))
    for item in batch_items(quadrats):
        process_photo(job, item, models)
    ours, theirs = output_files(out), output_files(sequential)
    per_photo = sorted(k for k in ours if k.split("/")[0] in ("photos", "warped", "instances", "overlays"))
    assert len(per_photo) == 12 * 4 and per_photo == sorted(theirs)
    for name in per_photo:
        assert ours[name] == theirs[name], name


def test_reading_and_writing_overlap_the_chain(quadrats, tmp_path, monkeypatch):
    """Reads of 0.15 s and a chain of 0.15 s per photo: the next photos are decoded while the chain
    runs (one after the other, no read overlaps a chain call), the models called from one thread."""
    import pipeline.run

    real_read = pipeline.run.read_image_rgb
    reads, chains = [], []

    def slow_read(path):
        start = time.perf_counter()
        time.sleep(0.15)
        image = real_read(path)
        reads.append((start, time.perf_counter()))
        return image

    class TimedColonies(SquareColonies):
        def predict(self, image):
            start = time.perf_counter()
            found = super().predict(image)
            chains.append((start, time.perf_counter()))
            return found

    monkeypatch.setattr(pipeline.run, "read_image_rgb", slow_read)
    models = ChainModels(TimedColonies(delay_s=0.15))
    start = time.perf_counter()
    summary = process_folder(quadrats, tmp_path / "out", models, "fp", overlays=False)
    wall = time.perf_counter() - start
    assert summary["processed"] == 12
    assert len(models.segment.threads) == 1  # the models are called from one thread
    overlapping = sum(any(r0 < c1 and c0 < r1 for c0, c1 in chains) for r0, r1 in reads)
    assert overlapping >= 8, (overlapping, wall)  # 11 possible: every read but the first


def test_writers_write_several_photos_at_once_and_the_same_bytes(quadrats, tmp_path, monkeypatch):
    """Writes of 0.5 s per photo and a chain of 0.02 s: with ``writers=3`` three photos are written at
    the same time (the writing, not the chain, was the run's pace), and every output file is the one
    writer's, byte for byte."""
    import pipeline.engine_local

    real_write = pipeline.engine_local.write_photo
    active, most = [0], [0]
    lock = threading.Lock()

    def slow_write(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.5)
        try:
            return real_write(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(pipeline.engine_local, "write_photo", slow_write)
    out = {}
    for writers in (1, 3):
        most[0] = 0
        out[writers] = tmp_path / f"writers-{writers}"
        options = EngineOptions(writers=writers, prefetch=4)
        summary = process_folder(
            quadrats, out[writers], ChainModels(SquareColonies(0.02)), "fp", engine=options
        )
        assert (summary["processed"], summary["failed"]) == (12, 0)
        assert most[0] == writers
    assert output_files(out[3]) == output_files(out[1])
    with pytest.raises(ValueError, match="writers"):
        EngineOptions(writers=0)


def test_a_photo_that_fails_is_recorded_and_its_claim_released(quadrats, tmp_path):
    bad = quadrats / "Haapiti" / "2020" / "Q0.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    with pytest.raises(Exception, match="1 of 12 images failed"):
        process_folder(quadrats, out, ChainModels(SquareColonies()), "fp")
    rows = list(csv.DictReader((out / "status.csv").open()))
    assert [r["photo"] for r in rows if r["error"]] == ["Haapiti/2020/Q0.jpg"]
    assert not list((out / ".claims").rglob("*.claim"))
    failures = list(csv.DictReader((out / "failures.csv").open()))
    assert [f["key"] for f in failures] == ["Haapiti/2020/Q0.jpg"]


def test_a_dead_runs_claim_expires_and_a_live_runs_claim_is_waited_for(quadrats, tmp_path):
    """A claim not touched for the time-to-live (its run died) is taken over at once; a claim a live
    run keeps touching is waited for until that run lets the photo go."""
    out = tmp_path / "out"
    keys = [item.key for item in batch_items(quadrats)]
    dead = PhotoClaims(out, token="gone:1:dead", ttl_s=2.0)
    assert dead.claim(keys[0])
    old = time.time() - 60
    os.utime(claim_path(out, keys[0]), (old, old))
    live = PhotoClaims(out, token="other:2:live", ttl_s=2.0)
    assert live.claim(keys[1])
    assert not PhotoClaims(out, ttl_s=2.0).claim(keys[1])

    released = threading.Event()

    def let_go():
        with live:  # its heartbeat keeps the claim fresh for 2.5 s, then the photo is let go
            time.sleep(2.5)
        live.release(keys[1])
        released.set()

    holder = threading.Thread(target=let_go)
    holder.start()
    summary = process_folder(
        quadrats, out, ChainModels(SquareColonies()), "fp", engine=EngineOptions(claim_ttl_s=2.0)
    )
    holder.join()
    assert released.is_set()
    assert (summary["processed"], summary["failed"]) == (12, 0)
    assert not list((out / ".claims").rglob("*.claim"))


def untrained_seg(tmp_path: Path) -> Path:
    from engine_models import untrained_seg_weights

    from quadratseg.taxonomy import load_taxonomy

    return untrained_seg_weights(tmp_path / "weights" / "seg.pt", load_taxonomy().classes("main_family"))


@pytest.mark.slow
def test_two_processes_on_one_output_folder_do_each_photo_once(quadrats, tmp_path):
    """Two ``python -m pipeline.process`` started together on one OUT: each photo is processed by
    one of them (before: both processed every photo), every record is there, status.csv has one row
    per photo, and both runs end with the whole tables."""
    weights = untrained_seg(tmp_path)
    for index in range(12, 24):  # 24 photos of 1024 px: each run has seconds of work
        source = quadrats / ("Tiahura" if index % 2 else "Haapiti") / "2020" / f"Q{index - 12}.jpg"
        image = cv2.resize(cv2.imread(str(source)), (1024, 1024))
        cv2.imwrite(str(source.with_name(f"Q{index}.jpg")), cv2.flip(image, 0))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "pipeline.process",
        str(quadrats),
        str(out),
        "--yolo",
        str(weights),
        "--yolo-imgsz",
        "64",
        "--warp-size",
        "1024",
    ]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(command, cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    summaries = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr.decode()[-3000:]
        text = stdout.decode()
        summaries.append(json.loads(text[text.index("{\n") :]))  # after any library notice
    assert sum(s["processed"] for s in summaries) == 24, summaries
    assert all(s["processed"] + s["resumed_skipped"] == 24 for s in summaries), summaries
    rows = list(csv.DictReader((out / "status.csv").open()))
    assert len(rows) == len({r["photo"] for r in rows}) == 24
    assert all(r["cover"] == "ok" and not r["error"] for r in rows)
    assert len(list((out / "photos").rglob("*.json"))) == 24
    assert not list((out / ".claims").rglob("*.claim"))
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_the_local_engine_needs_no_ray_and_a_wrong_engine_is_named(quadrats, tmp_path):
    code = (
        "import sys, pipeline.process, pipeline.engine_local, pipeline.claims; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr[-2000:]
    from quadratseg.errors import QuadratsegError

    with pytest.raises(QuadratsegError, match="--engine must be one of local, ray, got 'spark'"):
        process_folder(
            quadrats, tmp_path / "out", ChainModels(SquareColonies()), "fp", engine=EngineOptions("spark")
        )


def test_ray_missing_is_named_with_the_extra_to_install(quadrats, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    from quadratseg.errors import QuadratsegError

    with pytest.raises(QuadratsegError, match=r"quadratseg\[ray\]"):
        process_folder(
            quadrats,
            tmp_path / "out",
            ChainModels(SquareColonies()),
            "fp",
            engine=EngineOptions(engine="ray", models_factory=lambda: None),
        )


def test_an_interrupted_run_lets_its_claims_go_and_a_rerun_does_the_rest(quadrats, tmp_path):
    class InterruptedAt(SquareColonies):
        def __init__(self, at):
            super().__init__()
            self.calls, self.at = 0, at

        def predict(self, image):
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return super().predict(image)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        process_folder(quadrats, out, ChainModels(InterruptedAt(5)), "fp")
    written = len(list((out / "photos").rglob("*.json")))
    assert written == 4
    assert not list((out / ".claims").rglob("*.claim"))  # the photos read ahead are free again
    summary = process_folder(quadrats, out, ChainModels(SquareColonies()), "fp")
    assert (summary["processed"], summary["resumed_skipped"]) == (8, 4)


def test_a_run_sweeps_temporaries_a_killed_writer_left_and_keeps_fresh_ones(quadrats, tmp_path):
    """A writer killed between its write and its rename leaves ``.NAME.tmp-PID-HEX`` behind (a file,
    or a folder of atomic_output_dir): the next run on the folder removes those untouched for longer
    than the claim time-out, and leaves a live writer's fresh temporary and every other file alone."""
    out = tmp_path / "out"
    models = ChainModels(SquareColonies())
    process_folder(quadrats, out, models, "fp")
    before = output_files(out)
    stale = [
        out / "photos" / "Haapiti" / "2020" / ".Q0.json.tmp-4242-0a1b2c3d",
        out / ".cover.csv.tmp-4242-deadbeef",
        out / "warped" / ".folder.tmp-4242-00ff00ff",
    ]
    fresh = out / "instances" / ".Q1.json.tmp-4343-12345678"
    other = [out / ".notes.txt", out / "my.tmp-1-2"]
    for path in [*stale, fresh, *other]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.startswith(".folder"):
            path.mkdir()
            (path / "half.jpg").write_bytes(b"half")
        else:
            path.write_bytes(b"half")
    old = time.time() - 600
    for path in [*stale, *other]:
        os.utime(path, (old, old))
    summary = process_folder(quadrats, out, models, "fp", engine=EngineOptions(claim_ttl_s=120))
    assert summary["resumed_skipped"] == 12
    assert [p for p in stale if p.exists()] == []
    assert fresh.exists() and all(p.exists() for p in other)
    fresh.unlink()
    after = output_files(out)
    for path in other:
        after.pop(path.relative_to(out).as_posix())
    assert after == before
