"""``pipeline.process --engine ray``: the same files as the local engine, resume across engines, and
faults (an actor killed mid-run) on a real Ray started once for the module (2 CPUs, pools of one
actor)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    """Ray on this machine, 2 CPUs, no dashboard; shut down after the module."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def survey(synthetic_set, tmp_path_factory):
    """Twelve 256 px warped quadrats as site/year/Qn.jpg, and an untrained YOLO11n-seg of the main
    families that finds colonies on them (a real model every process can load)."""
    from engine_models import untrained_seg_weights

    from quadratseg.taxonomy import load_taxonomy

    root = tmp_path_factory.mktemp("ray-survey")
    images = sorted((synthetic_set / "cvat_exports" / "segmentation" / "images").rglob("*.jpg"))
    folder = root / "survey"
    for index in range(12):
        image = cv2.imread(str(images[index % len(images)]))
        if index >= len(images):
            image = image[:, ::-1]
        target = folder / ("Tiahura" if index % 2 else "Haapiti") / str(2019 + index % 3) / f"Q{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
    weights = untrained_seg_weights(root / "weights" / "seg.pt", load_taxonomy().classes("main_family"))
    return folder, weights


@pytest.fixture(scope="module")
def big_survey(survey, tmp_path_factory):
    """The survey's photos at 1024 px, each three times (36 photos): a run slow enough, photos
    still to do, to be caught, killed or cut off midway on any machine."""
    folder, weights = survey
    big = tmp_path_factory.mktemp("ray-big") / "survey"
    for path in sorted(folder.rglob("*.jpg")):
        image = cv2.resize(cv2.imread(str(path)), (1024, 1024))
        for copy in range(3):
            target = big / path.relative_to(folder).parent / f"{path.stem}c{copy}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), image if copy == 0 else np.ascontiguousarray(np.rot90(image, copy)))
    return big, weights


BIG = 36  # photos of big_survey


def run_process(survey, out: Path, **options) -> dict:
    from pipeline.process import process

    folder, weights = survey
    return json.loads(
        process(
            str(folder), str(out), yolo=str(weights), yolo_imgsz=64, warp_size=256, quadrat_cm=50, **options
        )
    )


def comparable(out: Path) -> dict[str, bytes]:
    """Every file of a run's folder by relative path, normalised where runs legitimately differ: the
    records' ``seconds`` (wall times) and ``timing.csv`` (their sums) are left out; nothing else."""
    files = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        if not path.is_file() or relative == "timing.csv" or relative.startswith(".claims"):
            continue
        data = path.read_bytes()
        if relative.startswith("photos/"):
            record = json.loads(data)
            record.pop("seconds")
            data = json.dumps(record, sort_keys=True).encode()
        files[relative] = data
    return files


def test_ray_writes_the_local_engines_files_byte_for_byte(ray_session, survey, tmp_path):
    local = run_process(survey, tmp_path / "local")
    on_ray = run_process(survey, tmp_path / "ray", engine="ray")
    assert (local["processed"], on_ray["processed"], on_ray["engine"]) == (12, 12, "ray")
    ours, theirs = comparable(tmp_path / "local"), comparable(tmp_path / "ray")
    assert sorted(ours) == sorted(theirs)
    for name in ("status.csv", "cover.csv", "cover_summary.csv", "colonies.csv", "report.html", "run.json"):
        assert name in ours
    assert sum(1 for name in ours if name.startswith("instances/")) == 12
    assert any(json.loads(ours[n]) for n in ours if n.startswith("instances/"))  # colonies were found
    different = [name for name in ours if ours[name] != theirs[name]]
    assert not different


def test_an_actor_writes_photos_while_its_model_works(ray_session, survey, tmp_path):
    """One actor, a model of 0.15 s a call and writes of 0.15 s a photo (both slowed in the actor's
    process): a photo is written while the model works on the next (the local engine's overlap,
    inside the actor), so Ray at 1 worker goes at the local engine's pace once started; one photo
    after the other, no write would overlap a call."""
    from functools import partial

    import engine_models
    from ray import cloudpickle

    from pipeline.chain import ChainModels
    from pipeline.run import EngineOptions, process_folder
    from quadratseg.taxonomy import load_taxonomy

    cloudpickle.register_pickle_by_value(engine_models)  # the stand-in travels to the actor whole
    log = tmp_path / "spans.txt"
    names = load_taxonomy().classes("main_family")
    factory = partial(engine_models.slow_chain_models, str(log), 0.15, names)
    folder, _ = survey
    options = EngineOptions(engine="ray", ray_workers=1, models_factory=factory)
    here = ChainModels(segment=engine_models.SlowColonies(str(tmp_path / "here.txt"), 0.15, names))
    summary = process_folder(folder, tmp_path / "out", here, "fp", warp_size=(256, 256), engine=options)
    assert summary["processed"] == 12
    spans: dict[str, list[tuple[float, float]]] = {"call": [], "write": []}
    for line in log.read_text().splitlines():
        kind, start, end = line.split()
        spans[kind].append((float(start), float(end)))
    calls, writes = spans["call"], spans["write"]
    assert len(calls) == len(writes) == 12
    overlapping = sum(any(w0 < c1 and c0 < w1 for c0, c1 in calls) for w0, w1 in writes)
    # a task's last write has no call beside it: 12 photos in tasks of 8 leave 10 possible
    assert overlapping >= 6, f"{overlapping} of 12 writes overlapped a model call"


def _records(out: Path) -> int:
    return len(list((out / "photos").rglob("*.json"))) if (out / "photos").is_dir() else 0


def test_a_local_run_killed_midway_is_resumed_on_ray_each_photo_once(ray_session, big_survey, tmp_path):
    """``python -m pipeline.process`` killed (SIGKILL) after a few photos; the run resumed with
    ``--engine ray`` does the others only, and takes over the dead run's claims at once."""
    big, weights = big_survey
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "pipeline.process", str(big), str(out),
        "--yolo", str(weights), "--yolo-imgsz", "64", "--warp-size", "256", "--quadrat-cm", "50",
    ]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _records(out) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = _records(out)
    assert 3 <= before < BIG, "the local run was not caught midway"
    from pipeline.process import process

    summary = json.loads(
        process(
            str(big), str(out), yolo=str(weights), yolo_imgsz=64, warp_size=256, quadrat_cm=50, engine="ray"
        )
    )
    assert (summary["processed"], summary["resumed_skipped"], summary["failed"]) == (BIG - before, before, 0)
    again = json.loads(
        process(str(big), str(out), yolo=str(weights), yolo_imgsz=64, warp_size=256, quadrat_cm=50)
    )
    assert (again["processed"], again["resumed_skipped"]) == (0, BIG)  # and back on the local engine
    assert not list((out / ".claims").rglob("*.claim"))
    # the only temporary files are the killed process's unfinished ones (hidden, never renamed)
    leftovers = [p.name for p in out.rglob("*") if ".tmp-" in p.name]
    assert all(name.startswith(".") and f".tmp-{child.pid}-" in name for name in leftovers), leftovers


def _chain_worker_pids() -> list[int]:
    """The chain actors' processes of this test session's Ray (children of its raylet), never
    another program's."""
    import psutil
    from ray._private import ray_constants

    node = ray._private.worker.global_worker.node
    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    pids = []
    for process in psutil.Process(raylet).children(recursive=True):
        try:
            if any("ChainWorker" in part for part in process.cmdline()):
                pids.append(process.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return pids


def test_an_actor_killed_mid_run_costs_a_retry_not_a_half_written_or_duplicated_photo(
    ray_session, big_survey, tmp_path
):
    out = tmp_path / "out"
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_process(big_survey, out, engine="ray")))
    runner.start()
    deadline = time.monotonic() + 120
    while _records(out) < 2 and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = _chain_worker_pids()
    assert killed, "no chain actor found"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    runner.join(timeout=300)
    assert result, "the run did not end"
    # the killed actor's photo is retried; one whose record was already written is skipped by the retry
    assert result["processed"] + result["resumed_skipped"] == BIG and result["resumed_skipped"] <= 1, result
    assert result["failed"] == 0
    fingerprints = {json.loads(p.read_text())["fingerprint"] for p in (out / "photos").rglob("*.json")}
    assert len(list((out / "photos").rglob("*.json"))) == BIG and len(fingerprints) == 1
    rows = (out / "status.csv").read_text().splitlines()[1:]
    assert len(rows) == len(set(rows)) == BIG
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert set(_chain_worker_pids()).isdisjoint(killed) or not _chain_worker_pids()


def test_a_photo_that_fails_on_ray_is_recorded_and_not_retried(ray_session, survey, tmp_path):
    folder, weights = survey
    photos = tmp_path / "photos"
    for path in sorted(folder.rglob("*.jpg"))[:3]:
        target = photos / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    bad = sorted(photos.rglob("*.jpg"))[1]
    bad.write_bytes(b"not a jpeg")
    from quadratseg.batch import BatchFailedError

    with pytest.raises(BatchFailedError) as failed:
        run_process((photos, weights), tmp_path / "out", engine="ray")
    summary = json.loads(failed.value.summary)
    assert (summary["processed"], summary["failed"]) == (2, 1)
    failures = (tmp_path / "out" / "failures.csv").read_text().splitlines()
    assert len(failures) == 2 and bad.relative_to(photos).as_posix() in failures[1]


def test_a_node_removed_mid_run_costs_a_retry_on_the_other_node(big_survey, tmp_path):
    """A cluster of a head and two 1-CPU nodes on 127.0.0.1 (a Ray of its own, in a child process);
    the node holding the chain actor is removed after two photos: the run ends with every photo done
    once on the other node."""
    folder, weights = big_survey
    out, report_path = tmp_path / "out", tmp_path / "report.json"
    child = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "ray_two_nodes.py"),
            str(folder),
            str(out),
            str(weights),
            str(report_path),
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(report_path.read_text())
    summary = report["summary"]
    assert report["removed_nodes"] == 1
    assert summary["processed"] + summary["resumed_skipped"] == BIG and summary["failed"] == 0, summary
    assert summary["resumed_skipped"] <= 1, summary
    rows = (out / "status.csv").read_text().splitlines()[1:]
    assert len(rows) == len(set(rows)) == BIG
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_a_ray_run_interrupted_midway_is_resumed_locally_each_photo_once(big_survey, tmp_path):
    """``python -m pipeline.process --engine ray`` (a Ray of its own) interrupted with Ctrl-C
    (SIGINT) after a few photos; the local engine then does the others only."""
    folder, weights = big_survey
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "pipeline.process", str(folder), str(out), "--engine", "ray",
        "--yolo", str(weights), "--yolo-imgsz", "64", "--warp-size", "256", "--quadrat-cm", "50",
    ]  # fmt: skip
    child = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while _records(out) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    before = _records(out)
    assert 3 <= before < BIG, "the Ray run was not caught midway"
    summary = run_process(big_survey, out)
    assert (summary["processed"], summary["resumed_skipped"], summary["failed"]) == (BIG - before, before, 0)
    rows = (out / "status.csv").read_text().splitlines()[1:]
    assert len(rows) == len(set(rows)) == BIG
    assert not list((out / ".claims").rglob("*.claim"))
