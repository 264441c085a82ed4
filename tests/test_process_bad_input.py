"""pipeline.process on bad input: a clear error or a failure of the one photo, never a hang, a
traceback or a photo dropped in silence.

Every test goes through the function the command calls (``pipeline.process.process``, and
``quadratseg.cli.run`` where the exit code matters) with stand-ins for the models only
(``fake_weights``).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from chain_standins import FakePoseModel
from process_runs import _rows, _run

import quadratseg.cli
from pipeline.process import process
from quadratseg.errors import QuadratsegError

# ------------------------------------------------------------------ 1. claims that cannot be written


@pytest.mark.timeout(60)
@pytest.mark.parametrize("records_folder_exists", [False, True])
def test_a_photo_whose_claim_cannot_be_written_fails_alone_and_the_others_are_done(
    photos, seg, tmp_path, cli, records_folder_exists
):
    """A photo name too long for a claim file on this file system (``<name>.claim`` over 255 bytes):
    before, the reader thread died on it and the run waited for ever. Whether the look for its
    record (``photos/<name>.json``, also too long) comes before or after another photo's record made
    ``photos/`` depends on the threads; both orders are run here."""
    long_name = photos[0].with_name("Q" * 250 + ".jpg")
    shutil.copy(photos[0], long_name)
    out = tmp_path / "out"
    if records_folder_exists:
        (out / "photos").mkdir(parents=True)
    code, err = cli(str(photos[0].parent), str(out), "--yolo", seg, "--warp-size", "256")
    assert code == 3, err
    failures = _rows(out / "failures.csv")
    assert [f["key"] for f in failures] == [long_name.name]
    assert "cannot write the claim file" in failures[0]["reason"] and "too long" in failures[0]["reason"]
    status = {r["photo"]: r for r in _rows(out / "status.csv")}
    assert all(status[p.name]["cover"] == "ok" for p in photos)
    assert not list((out / ".claims").rglob("*.claim"))


def _unwritable(folder) -> bool:
    """Make ``folder`` unwritable (mode 555, else for root the immutable attribute); True if it is."""
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return True
    probe.unlink()
    done = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    return bool(done) and done.returncode == 0


@pytest.mark.timeout(60)
def test_an_output_folder_where_nothing_can_be_written_stops_the_run_before_any_photo(
    photos, seg, tmp_path, cli
):
    """Before, the reader thread died on the first claim and the run waited for ever."""
    out = tmp_path / "out_claims_blocked"
    out.mkdir()
    (out / ".claims").write_text("a file where the claims folder goes")
    code, err = cli(str(photos[0].parent), str(out), "--yolo", seg, "--warp-size", "256")
    assert code == 2 and "cannot write in the output folder" in err and "\n" not in err, err
    assert not (out / "photos").exists()

    locked = tmp_path / "out_locked"
    locked.mkdir()
    if not _unwritable(locked):
        pytest.skip("this user can write in any folder (no chattr): the read-only case is not checked")
    try:
        code, err = cli(str(photos[0].parent), str(locked), "--yolo", seg, "--warp-size", "256")
        code_new, err_new = cli(
            str(photos[0].parent), str(locked / "new"), "--yolo", seg, "--warp-size", "256"
        )
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True, check=False)
        locked.chmod(0o755)
    assert code == 2 and f"cannot write in {locked}" in err, err
    assert code_new == 2 and "where the output folder" in err_new, err_new
    assert not list(locked.iterdir())


@pytest.mark.parametrize(
    # a run that hangs behind dead writers also hangs its clean-up: the thread method ends the session
    "where",
    [
        pytest.param("reader", marks=pytest.mark.timeout(60)),
        pytest.param("writer", marks=pytest.mark.timeout(60, method="thread")),
    ],
)
def test_an_error_of_a_helper_thread_reaches_the_run_instead_of_leaving_it_waiting(
    photos, seg, tmp_path, monkeypatch, where
):
    """A fault that is no photo's (stood for by claims that cannot be let go, after a photo failed to
    read: the reader; after each photo's write: the writers) is raised by the run; before, the thread
    died and the run waited for ever."""
    import pipeline.claims

    if where == "reader":
        photos[1].write_bytes(b"not a photo")
    for index in range(3, 8):  # photos enough to fill the queues behind dead writers
        shutil.copy(photos[0], photos[0].with_name(f"Q{index}.jpg"))

    def broken(self, key):
        if where == "writer" or key == photos[1].name:
            raise RuntimeError("the claims cannot be let go")

    monkeypatch.setattr(pipeline.claims.PhotoClaims, "release", broken)
    with pytest.raises(RuntimeError, match="cannot be let go"):
        _run(photos[0].parent, tmp_path / "out", seg)


# ------------------------------------------------------------ 2. an output folder inside the photos


def test_an_output_folder_inside_the_photo_folder_is_not_read_as_photos(photos, seg, caplog):
    folder = photos[0].parent
    out = folder / "runs" / "out"
    first = _run(folder, out, seg)
    assert first["photos"] == 3
    caplog.clear()
    with caplog.at_level("INFO", logger="pipeline.run"):
        again = _run(folder, out, seg)
    assert (again["photos"], again["resumed_skipped"], again["processed"]) == (3, 3, 0), again
    assert "is inside the photo folder" in caplog.text and "left out" in caplog.text
    assert sorted(r["photo"] for r in _rows(out / "status.csv")) == ["Q0.jpg", "Q1.jpg", "Q2.jpg"]


# ------------------------------------------- 3. two input folders, one output folder, the same names


def test_a_photo_of_the_same_name_from_another_folder_is_not_taken_as_this_runs(
    raw_photos,
    seg,
    tmp_path,
    monkeypatch,
):
    """Run A (siteA) and run B (siteB) share OUT; both folders hold ``IMG_0001.jpg``, other photos.
    B redoes it from its own photo between A's pass and A's tables: A's tables must not report B's
    photo as A's (before: only the record's fingerprint was checked, not the photo it was made from)."""
    import pipeline.engine_local

    folder, _truths, keys, _ = raw_photos
    site_a, site_b = tmp_path / "siteA", tmp_path / "siteB"
    for site, sources in ((site_a, keys[:2]), (site_b, keys[2:3])):
        site.mkdir()
        for index, key in enumerate(sources):
            shutil.copy(folder / key, site / f"IMG_000{index + 1}.jpg")
    out = tmp_path / "shared_out"
    real_run_local = pipeline.engine_local.run_local
    runs_of_b: list[dict] = []

    def then_run_b(items, job, models, options):
        outcome = real_run_local(items, job, models, options)
        if not runs_of_b:  # run B, on its own photo of the same name, before A builds its tables
            runs_of_b.append({})
            runs_of_b[0] = _run(site_b, out, seg)
        return outcome

    monkeypatch.setattr(pipeline.engine_local, "run_local", then_run_b)
    summary_a = _run(site_a, out, seg)
    assert runs_of_b[0]["processed"] == 1  # B saw A's record was of another photo and redid it
    status = {r["photo"]: r for r in _rows(out / "status.csv")}
    assert "another photo under the same name" in status["IMG_0001.jpg"]["error"], status
    assert not status["IMG_0002.jpg"]["error"]
    assert json.loads((out / "run.json").read_text())["photos"] == ["IMG_0002.jpg"]
    assert summary_a["with_cover"] == 1
    assert all(r["photo"] != "IMG_0001.jpg" for r in _rows(out / "cover.csv"))
    monkeypatch.setattr(pipeline.engine_local, "run_local", real_run_local)  # A again, alone: redone
    again = _run(site_a, out, seg)
    assert (again["processed"], again["resumed_skipped"]) == (1, 1)
    assert sorted(json.loads((out / "run.json").read_text())["photos"]) == ["IMG_0001.jpg", "IMG_0002.jpg"]


# ---------------------------------------------------- 4. image suffixes: read them, or say so


def test_jfif_and_jpe_photos_are_read_and_image_files_it_cannot_read_are_named(photos, seg, tmp_path, caplog):
    folder = photos[0].parent
    photos[1].rename(folder / "Q1.jfif")
    photos[2].rename(folder / "Q2.JPE")
    for name in ("Q3.heic", "raw/Q4.dng", "raw/Q5.CR2"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"camera bytes")
    with caplog.at_level("WARNING"):
        summary = _run(folder, tmp_path / "out", seg)
    assert (summary["photos"], summary["processed"], summary["failed"]) == (3, 3, 0), summary
    assert summary["unreadable_images"] == 3
    warning = next(r.getMessage() for r in caplog.records if "cannot be read here" in r.getMessage())
    assert all(name in warning for name in ("Q3.heic", "raw/Q4.dng", "raw/Q5.CR2")), warning
    keys = {r["photo"] for r in _rows(tmp_path / "out" / "status.csv")}
    assert keys == {"Q0.jpg", "Q1.jfif", "Q2.JPE"}


# ---------------------------------- 5. a metadata CSV not in UTF-8, an output folder that is a file


def test_a_metadata_csv_not_in_utf8_is_refused_in_one_line_and_utf8_with_a_bom_is_read(
    photos, seg, tmp_path, cli
):
    folder = photos[0].parent
    latin1 = tmp_path / "meta_latin1.csv"
    latin1.write_bytes("photo,site,year,quadrat\nQ0.jpg,Récif,2019,Q1\n".encode("latin-1"))
    code, err = cli(
        str(folder), str(tmp_path / "out"), "--yolo", seg, "--warp-size", "256", "--metadata", str(latin1)
    )
    assert code == 2, err
    assert str(latin1) in err and "save it as UTF-8" in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was made

    bom = tmp_path / "meta_bom.csv"
    bom.write_bytes("photo,site,year,quadrat\nQ0.jpg,Récif,2019,Q1\n".encode("utf-8-sig"))
    _run(folder, tmp_path / "out", seg, metadata=str(bom))
    rows = [r for r in _rows(tmp_path / "out" / "cover.csv") if r["photo"] == "Q0.jpg"]
    assert rows and {(r["site"], r["year"]) for r in rows} == {("Récif", "2019")}


def test_the_metadata_csv_is_read_once_the_table_checked_is_the_table_used(
    photos, seg, tmp_path, monkeypatch
):
    """pipeline.process checks the metadata CSV before any model loads; the run then used to read the
    file again (a table edited meanwhile was used unchecked). One read, and its rows are the ones used."""
    import pipeline.run
    import quadratseg.photo_meta

    reads = []
    read = quadratseg.photo_meta.read_photo_metadata

    def counted(path):
        reads.append(str(path))
        return read(path)

    monkeypatch.setattr(quadratseg.photo_meta, "read_photo_metadata", counted)
    monkeypatch.setattr(pipeline.run, "read_photo_metadata", counted)
    meta = tmp_path / "meta.csv"
    meta.write_text("photo,site,year,quadrat\nQ0.jpg,Temae,2019,T1\n", encoding="utf-8")
    _run(photos[0].parent, tmp_path / "out", seg, metadata=str(meta))
    assert reads == [str(meta)]
    rows = [r for r in _rows(tmp_path / "out" / "cover.csv") if r["photo"] == "Q0.jpg"]
    assert rows and {(r["site"], r["year"]) for r in rows} == {("Temae", "2019")}


def test_an_output_folder_that_is_a_file_is_refused_before_any_model_is_loaded(
    photos, seg, tmp_path, monkeypatch, cli
):
    import quadratseg.yolo_train

    built = []
    build = quadratseg.yolo_train.build_model
    monkeypatch.setattr(
        quadratseg.yolo_train, "build_model", lambda weights: built.append(weights) or build(weights)
    )
    taken = tmp_path / "results.csv"
    taken.write_text("a file the user keeps")
    for out in (taken, taken / "out"):
        code, err = cli(str(photos[0].parent), str(out), "--yolo", seg, "--warp-size", "256")
        assert code == 2 and "\n" not in err, err
        assert "is a file" in err and str(taken) in err, err
    assert taken.read_text() == "a file the user keeps" and built == []


# ------------------------------------------------------- 6. 16-bit photos of 10..14-bit sensor data


def test_16_bit_photos_of_12_bit_data_read_as_their_8_bit_originals(photos, seg, tmp_path):
    """The same picture as 8-bit files and as 12-bit data in 16-bit files (PNG grey, TIFF colour),
    and as full 16-bit data: every warped quadrat the run writes must be the 8-bit one's (before:
    the 12-bit ones kept the high byte, a sixteenth of the brightness)."""
    rgb = cv2.imread(str(photos[0]))  # BGR uint8
    assert rgb.max() >= 128  # 12 bits of data: the scaling is exactly 16
    gray = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
    folder = tmp_path / "deep"
    folder.mkdir()
    cv2.imwrite(str(folder / "rgb8.png"), rgb)
    cv2.imwrite(str(folder / "rgb12.tif"), rgb.astype(np.uint16) << 4)
    cv2.imwrite(str(folder / "rgb16.tif"), rgb.astype(np.uint16) << 8)
    cv2.imwrite(str(folder / "gray8.png"), gray)
    cv2.imwrite(str(folder / "gray12.png"), gray.astype(np.uint16) << 4)
    cv2.imwrite(str(folder / "gray12.tif"), gray.astype(np.uint16) << 4)
    out = tmp_path / "out"
    assert _run(folder, out, seg)["processed"] == 6

    def warped(name):
        return cv2.imread(str(out / "warped" / f"{name}.jpg")).astype(int)

    for name, original in (
        ("rgb12.tif", "rgb8.png"),
        ("rgb16.tif", "rgb8.png"),
        ("gray12.png", "gray8.png"),
        ("gray12.tif", "gray8.png"),
    ):
        assert np.abs(warped(name) - warped(original)).max() <= 1, name


# ------------------------------------------------------------------ 7. LaMa weights missing


def test_lama_without_weights_names_what_pipeline_process_accepts(
    raw_photos,
    fake_weights,
    seg,
    tmp_path,
    monkeypatch,
):
    _folder, truths, _keys, _ = raw_photos
    grid = str(fake_weights("grid", FakePoseModel(truths)))
    monkeypatch.delenv("LAMA_MODEL", raising=False)
    monkeypatch.setenv("QUADRATSEG_MODELS_DIR", str(tmp_path / "no_models"))
    monkeypatch.setattr(quadratseg.cli, "_settings", None)
    with pytest.raises(QuadratsegError) as error:
        process(str(tmp_path), str(tmp_path / "out"), yolo=seg, grid=grid, warp_size=256)
    message = str(error.value)
    assert "--lama-model" not in message and "--backend" not in message, message
    assert "--inpaint lama" in message and "LAMA_MODEL" in message and "--inpaint opencv-telea" in message


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--ray-cpus-per-model", "-1", "--ray-cpus-per-model -1 is not a number of 0 or more"),
        ("--ray-gpus-per-model", "nan", "--ray-gpus-per-model nan is not a number of 0 or more"),
        ("--ray-workers", "0", "--ray-workers 0 is not a whole number of 1 or more"),
    ],
)
def test_bad_ray_engine_options_are_refused_before_any_model_is_loaded(
    photos, seg, tmp_path, cli, option, value, message
):
    out = tmp_path / "out"
    code, err = cli(str(photos[0].parent), str(out), "--yolo", seg, "--engine", "ray", option, value)
    assert code == 2 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--quadrat-cm", "0"),
        ("--quadrat-cm", "-50"),
        ("--quadrat-cm", "nan"),
        ("--quadrat-cm", "wide"),
        ("--conf", "1.5"),
        ("--conf", "-0.1"),
        ("--aspect", "0"),
        ("--aspect", "inf"),
        ("--warp-size", "0"),
        ("--warp-size", "-640"),
        ("--boundary-px", "-2"),
        ("--miss-pp", "nan"),
        ("--miss-pp", "150"),
        ("--ensemble-weight", "1.5"),
        ("--nms-iou", "0"),
        ("--yolo-imgsz", "-1"),
        ("--corners-conf", "2"),
        ("--claim-ttl", "0"),
    ],
)
def test_bad_run_numbers_are_refused_with_their_option_before_any_model_is_loaded(
    photos, seg, tmp_path, cli, option, value
):
    """A number no run can use (a quadrat 0 cm wide gives pixel counts labelled cm^2; a confidence
    of 1.5 keeps no colony) ends the command with exit 2 and the option's name, and no output
    folder is made."""
    out = tmp_path / "out"
    code, err = cli(str(photos[0].parent), str(out), "--yolo", seg, option, value)
    assert code == 2, (code, err)
    assert option in err and value in err, err
    assert not out.exists()


def test_every_number_a_run_can_use_is_accepted_as_typed():
    """The range checks refuse nothing a survey gives: a confidence of 0, a 2:1 rectangle or its
    transpose, any warp size, the whole cover range; a number keeps its type (the run's fingerprint,
    and so the photos an earlier run did, unchanged), a number fire left as text is read."""
    from pipeline.process import check_numbers
    from pipeline.run import RunConfig

    edges = {
        "conf": 0, "aspect": 0.5, "warp_size": 1280, "quadrat_cm": 50, "miss_pp": 100,
        "ensemble_weight": 0, "nms_iou": 1, "boundary_px": 0.0, "corners_conf": 1.0, "yolo_imgsz": 640,
    }  # fmt: skip
    config = RunConfig(**edges)
    assert check_numbers(config) == config
    checked = check_numbers(config)
    assert {k: type(getattr(checked, k)) for k in edges} == {k: type(v) for k, v in edges.items()}
    assert check_numbers(RunConfig(warp_size="1920", aspect="2")).warp_size == 1920
