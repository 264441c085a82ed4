"""``pipeline.process --engine ray``: the same files as the local engine, resume across engines, and
faults (an actor killed mid-run) on a real Ray started once for the module (2 CPUs, pools of one
actor)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
    """Ray on this machine, 2 CPUs, no dashboard, of this session's own (never a cluster another
    run recorded in /tmp/ray); shut down after the module."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
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


def test_each_model_stage_is_a_pool_of_its_own_actors_holding_its_models_only(ray_session, survey, tmp_path):
    """A two-stage chain (a corner model and a colony model): two actor pools, the corner actor
    built with the corner model alone and the colony actor with the colony model alone (the
    factory's ``only``), each photo through both."""
    from functools import partial

    import engine_models
    from ray import cloudpickle

    from pipeline.run import EngineOptions, process_folder
    from quadratseg.taxonomy import load_taxonomy

    cloudpickle.register_pickle_by_value(engine_models)
    log = tmp_path / "built.txt"
    names = load_taxonomy().classes("main_family")
    factory = partial(engine_models.staged_chain_models, str(log), names)
    folder, _ = survey
    options = EngineOptions(engine="ray", ray_workers=1, models_factory=factory)
    here = engine_models.staged_chain_models(str(tmp_path / "here.txt"), names)
    summary = process_folder(folder, tmp_path / "out", here, "fp", warp_size=(128, 128), engine=options)
    assert (summary["processed"], summary["failed"]) == (12, 0)
    built = [line.split() for line in log.read_text().splitlines()]
    pids = {tuple(fields): pid for pid, *fields in built}
    assert sorted(pids) == [("corners",), ("segment",)], built
    assert len(set(pids.values())) == 2  # two actors, two processes
    status = (tmp_path / "out" / "status.csv").read_text()
    assert status.count(",ok,") >= 12 and "single-stage" not in status
    record = json.loads(next((tmp_path / "out" / "photos").rglob("*.json")).read_text())
    assert record["warped_size"] == [128, 128]


@pytest.fixture
def own_ray_tmp():
    """A child process's Ray temp folder (``RAY_TMPDIR``) of its own, short enough for Ray's
    sockets: no record another run left in /tmp/ray reaches it, and none it leaves reaches others."""
    folder = Path(tempfile.mkdtemp(prefix="qsray", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def child_env(ray_tmp: Path) -> dict[str, str]:
    """The environment of a child process running a Ray of its own in ``ray_tmp``."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
        "RAY_TMPDIR": str(ray_tmp),
    }
    env.pop("RAY_ADDRESS", None)
    return env


def ray_process_command(folder: Path, out: Path, weights: Path) -> list[str]:
    """``python -m pipeline.process FOLDER OUT --engine ray`` with the survey's tiny YOLO, no address."""
    return [
        sys.executable, "-m", "pipeline.process", str(folder), str(out), "--engine", "ray",
        "--yolo", str(weights), "--yolo-imgsz", "64", "--warp-size", "256", "--quadrat-cm", "50",
    ]  # fmt: skip


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


def test_a_node_removed_mid_run_costs_a_retry_on_the_other_node(big_survey, tmp_path, own_ray_tmp):
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
        env=child_env(own_ray_tmp),
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


def test_a_ray_run_interrupted_midway_is_resumed_locally_each_photo_once(big_survey, tmp_path, own_ray_tmp):
    """``python -m pipeline.process --engine ray`` (a Ray of its own) interrupted with Ctrl-C
    (SIGINT) after a few photos; the local engine then does the others only."""
    folder, weights = big_survey
    out = tmp_path / "out"
    command = ray_process_command(folder, out, weights)
    child = subprocess.Popen(
        command,
        cwd=REPO,
        env=child_env(own_ray_tmp),
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


def test_a_run_without_an_address_starts_its_own_ray_whatever_the_machine_recorded(
    survey, tmp_path, own_ray_tmp
):
    """``python -m pipeline.process --engine ray`` without ``--ray-address`` on a machine whose
    /tmp/ray still names a cluster that is gone (``ray start`` killed, a crashed run): the run
    starts a Ray of its own and does every photo, where Ray's default joins the record and hangs."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (own_ray_tmp / "ray").mkdir()
    (own_ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    folder, weights = survey
    out = tmp_path / "out"
    command = ray_process_command(folder, out, weights)
    try:
        child = subprocess.run(
            command, cwd=REPO, env=child_env(own_ray_tmp), capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the run was still waiting after 300 s: {str(error.stderr)[-1500:]}")
    assert child.returncode == 0, child.stderr[-3000:]
    summary = json.loads(child.stdout[child.stdout.index("{") :])
    assert (summary["engine"], summary["processed"], summary["failed"], _records(out)) == ("ray", 12, 0, 12)


def _two_stage_photos(survey, folder: Path) -> Path:
    """Six square photos of the survey, one wider than tall (no frame: it stops at the corners)
    and one taller than wide (the corner model raises on it): :class:`engine_models.InsetCorners`."""
    source, _ = survey
    for index, path in enumerate(sorted(source.rglob("*.jpg"))[:6]):
        image = cv2.imread(str(path))
        if index == 1:
            image = cv2.resize(image, (320, 256))
        elif index == 2:
            image = cv2.resize(image, (256, 320))
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
    return folder


def test_a_two_stage_chain_on_ray_writes_the_local_engines_files_with_its_stops_and_failures(
    ray_session, survey, tmp_path
):
    """Corners (a stand-in that stops one photo and fails another) and the real colony model, each
    in its own pool: the files, statuses and failures are the local engine's, byte for byte."""
    from functools import partial

    import engine_models
    from ray import cloudpickle

    from pipeline.run import EngineOptions, process_folder
    from quadratseg.batch import BatchFailedError

    cloudpickle.register_pickle_by_value(engine_models)
    photos = _two_stage_photos(survey, tmp_path / "photos")
    weights = str(survey[1])
    factory = partial(engine_models.inset_chain_models, weights)
    summaries = {}
    for name, engine in (
        ("local", EngineOptions()),
        ("ray", EngineOptions(engine="ray", models_factory=factory)),
    ):
        with pytest.raises(BatchFailedError) as failed:
            process_folder(photos, tmp_path / name, factory(), "fp", quadrat_cm=50, engine=engine)
        summaries[name] = json.loads(failed.value.summary)
    assert summaries["ray"]["processed"] == summaries["local"]["processed"] == 5
    assert summaries["ray"]["failed"] == summaries["local"]["failed"] == 1
    ours, theirs = comparable(tmp_path / "local"), comparable(tmp_path / "ray")
    assert sorted(ours) == sorted(theirs)
    status = ours["status.csv"].decode()
    assert "stopped: no quadrat frame (no frame)" in status and status.count("two-stage") == 4
    assert "corner model failed on a 256 x 320 photo" in ours["failures.csv"].decode()
    assert sum(1 for name in ours if name.startswith("warped/")) == 4
    assert [name for name in ours if ours[name] != theirs[name]] == []


def test_a_photo_that_kills_its_worker_every_time_fails_alone(ray_session, survey, tmp_path):
    """A colony model whose process dies on one photo (a crash, as out of memory would): the
    actor is restarted and the photo tried again a bounded number of times, then recorded as a
    failure with the reason; the other photos are done and no claim is left behind."""
    from functools import partial

    import engine_models
    from ray import cloudpickle

    from pipeline.chain import ChainModels
    from pipeline.engine_ray import NO_ANSWER
    from pipeline.run import EngineOptions, process_folder
    from quadratseg.batch import BatchFailedError
    from quadratseg.taxonomy import load_taxonomy

    cloudpickle.register_pickle_by_value(engine_models)
    source, _ = survey
    photos = tmp_path / "photos"
    for index, path in enumerate(sorted(source.rglob("*.jpg"))[:4]):
        image = cv2.imread(str(path))
        target = photos / f"Q{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.resize(image, (200, 256)) if index == 2 else image)
    names = load_taxonomy().classes("main_family")
    factory = partial(engine_models.dying_chain_models, 200, names)
    here = ChainModels(segment=engine_models.SlowColonies(os.devnull, 0.0, names))
    options = EngineOptions(engine="ray", models_factory=factory)
    with pytest.raises(BatchFailedError) as failed:
        process_folder(photos, tmp_path / "out", here, "fp", engine=options)
    summary = json.loads(failed.value.summary)
    assert (summary["processed"], summary["failed"]) == (3, 1)
    failures = (tmp_path / "out" / "failures.csv").read_text()
    assert "Q2.jpg" in failures and NO_ANSWER.split(":")[0] in failures
    assert not list((tmp_path / "out" / ".claims").rglob("*.claim"))


def test_a_run_the_cluster_cannot_place_is_refused_with_what_it_needs(ray_session, survey, tmp_path):
    """Eight colony actors of half a CPU on a Ray of 2 CPUs would wait for ever: refused before
    any photo, with the CPUs needed and the options to change."""
    from quadratseg.errors import QuadratsegError

    with pytest.raises(QuadratsegError, match=r"needs 4\.5 CPUs .* has 2 .*--ray-workers"):
        run_process(survey, tmp_path / "out", engine="ray", ray_workers=8)
    assert not (tmp_path / "out" / "photos").exists()


def test_a_write_task_run_again_neither_rewrites_a_done_photo_nor_writes_one_another_run_took(
    survey, tmp_path
):
    """``write_rows`` run again after its write (its answer lost with its node): the record is
    left as it is (``skipped``); a photo whose claim another live run took over meanwhile is left
    to that run (``held``): nothing written, its claim not released."""
    import pickle

    from pipeline.chain import PhotoResult
    from pipeline.claims import PhotoClaims, claim_path
    from pipeline.engine_ray import PhotoInFlight, write_rows
    from pipeline.run import PhotoJob, photo_source

    folder, _ = survey
    photo = sorted(folder.rglob("*.jpg"))[0]
    job = PhotoJob(out=tmp_path / "out", fingerprint="fp")
    image = cv2.imread(str(photo))
    result = PhotoResult(status={"corners": "ok", "cover": "ok"}, warped=image, clean=image)
    flight = PhotoInFlight(image.shape, photo_source(photo), result, {"read": 0.0, "chain": 0.0})
    batch = {
        "key": ["a.jpg"], "path": [str(photo)], "outcome": [""], "reason": [""],
        "state": [pickle.dumps(flight)], "seconds": ["{}"],
    }  # fmt: skip
    mine = PhotoClaims(job.out, ttl_s=60)
    assert mine.claim("a.jpg")
    first = write_rows(batch, job, mine.token, 60)
    assert first["outcome"] == ["done"]
    record = job.record_path("a.jpg")
    written = record.stat().st_mtime_ns
    again = write_rows(batch, job, mine.token, 60)
    assert again["outcome"] == ["skipped"] and record.stat().st_mtime_ns == written

    other = PhotoClaims(job.out, ttl_s=60)  # a live run (this process) holds b.jpg
    assert other.claim("b.jpg")
    taken = write_rows({**batch, "key": ["b.jpg"]}, job, mine.token, 60)
    assert taken["outcome"] == ["held"]
    assert not job.record_path("b.jpg").exists() and claim_path(job.out, "b.jpg").exists()
