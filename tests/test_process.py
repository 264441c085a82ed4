"""pipeline.process on synthetic raw photos, with stage models that answer the truth.

The stages' models are replaced by stand-ins that return the generator's truth (corners, grid,
colonies) for each photo, so every figure the chain writes has a known right value: the cover
must be the true cover of the observed quadrat, the homography must map the true corners onto the
warped frame, and CoralNet points sampled from the truth must read back their own labels.
"""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
from chain_standins import FakePoseModel, FakeSegModel, TrueColonies, TrueCorners, TrueGrid, TruthByOrder
from process_runs import _status

from pipeline.chain import ChainModels
from pipeline.points import export_points, score_points
from pipeline.run import process_folder
from quadratseg.batch import BatchFailedError
from quadratseg.cover import label_map
from quadratseg.errors import QuadratsegError
from quadratseg.formats.coralnet import SUBSTRATE, read_coralnet_csv, write_coralnet_csv
from quadratseg.instances import Instance
from quadratseg.taxonomy import load_taxonomy
from quadratseg.warp import transform_points


def test_the_chain_gives_the_true_cover_of_the_observed_quadrat(raw_photos, tmp_path):
    folder, truths, keys, telea = raw_photos
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    out = tmp_path / "out"
    summary = process_folder(folder, out, models, "fp1")
    assert summary["photos"] == summary["with_cover"] == len(truths) and summary["variant"] == "three-stage"
    rows = list(csv.DictReader((out / "cover.csv").open()))
    assert {r["level"] for r in rows} == {"finegrained", "extended", "main_family", "agnostic"}
    for key, t in zip(keys, truths, strict=True):
        record = json.loads((out / "photos" / f"{key}.json").read_text())
        assert (
            record["status"]["removal"].startswith("ok") and 0.5 < record["observed_share"] < 1.0
        )  # 256 px: wide masks
        # the homography maps the true corners onto the warped frame's corners
        w, h = t["warped_size"]
        corners = transform_points(
            np.asarray(t["corners_raw_xy"]), np.asarray(record["homography_raw_to_warped"])
        )
        assert np.allclose(corners, [[0, 0], [w, 0], [w, h], [0, h]], atol=1e-3)
        # the cover of the observed pixels, from the truth polygons
        index, names = label_map([(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]], (w, h))
        clean_mask = np.ones((h, w), bool)
        grid = np.asarray(t["grid_warped_xy"])
        from grid_inpainting.masks import default_line_width, grid_mask

        clean_mask &= ~grid_mask(grid, (w, h), default_line_width((w, h)))
        for k, name in enumerate(names, start=1):
            expected = 100 * ((index == k) & clean_mask).sum() / clean_mask.sum()
            row = next(
                r for r in rows if r["photo"] == key and r["level"] == "finegrained" and r["label"] == name
            )
            assert float(row["percent"]) == pytest.approx(expected, abs=0.3)  # outlines re-rasterized
            assert float(row["low"]) <= float(row["percent"]) <= float(row["high"])
    status = list(csv.DictReader((out / "status.csv").open()))
    assert [r["photo"] for r in status] == keys and all(r["cover"] == "ok" for r in status)
    summary_rows = list(csv.DictReader((out / "cover_summary.csv").open()))
    assert {r["site"] for r in summary_rows} >= {"SynthNorth", "SynthLagoon"}
    # the report scientists read: every picture it shows is there
    html = (out / "report.html").read_text()
    pictures = re.findall(r"<img src='([^']+)'", html)
    assert len(pictures) >= 3 and all((out / p).is_file() for p in pictures)
    overlays = sorted((out / "overlays").rglob("*.jpg"))
    assert len(overlays) == len(truths) and all(p.read_bytes()[:3] == b"\xff\xd8\xff" for p in overlays)
    assert not list(out.rglob("*.tmp*"))  # no temporary file left
    # a rerun with the same models skips every photo; other options redo them
    again = process_folder(folder, out, models, "fp1")
    assert again["resumed_skipped"] == len(truths) and again["processed"] == 0
    assert list(csv.DictReader((out / "cover.csv").open())) == rows


def test_a_bad_photo_no_grid_and_no_frame_are_recorded_and_the_run_goes_on(raw_photos, tmp_path):
    folder, truths, keys, telea = raw_photos
    (folder / "broken").mkdir()
    (folder / "broken" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths, present=False), telea)
    with pytest.raises(BatchFailedError, match="1 of 7 images failed"):
        process_folder(folder, tmp_path / "out", models, "fp")
    status = {r["photo"]: r for r in csv.DictReader((tmp_path / "out" / "status.csv").open())}
    assert "cannot read image" in status["broken/cut.jpg"]["error"]
    assert all(status[k]["grid"].startswith("skipped: no grid") and status[k]["cover"] == "ok" for k in keys)
    record = json.loads((tmp_path / "out" / "photos" / f"{keys[0]}.json").read_text())
    assert record["observed_share"] == 1.0  # nothing inpainted, every pixel seen
    shutil.rmtree(folder / "broken")
    lost = ChainModels(TrueColonies(truths), TrueCorners(truths, found=False), None, None)
    summary = process_folder(folder, tmp_path / "lost", lost, "fp")
    assert summary["with_cover"] == 0 and summary["variant"] == "two-stage"
    status = list(csv.DictReader((tmp_path / "lost" / "status.csv").open()))
    assert all(r["corners"].startswith("stopped: no quadrat frame") and r["cover"] == "" for r in status)


def test_warped_and_grid_free_photos_are_jpeg_and_an_earlier_versions_png_is_replaced(raw_photos, tmp_path):
    """The warped and grid-free quadrats are JPEG (a PNG of a 1920 px quadrat took 10x the time to
    encode and 6x the disk); a rerun removes the PNG an earlier version left, and readers of older
    outputs still find it (pipeline.run.photo_output)."""
    import cv2

    from pipeline.run import photo_output

    folder, truths, keys, telea = raw_photos
    out = tmp_path / "out"
    for sub in ("warped", "clean"):
        (out / sub / keys[0]).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / sub / f"{keys[0]}.png"), np.zeros((8, 8, 3), np.uint8))
    assert photo_output(out, "warped", keys[0]) == out / "warped" / f"{keys[0]}.png"  # an older run's
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    process_folder(folder, out, models, "fp")
    for key, truth in zip(keys, truths, strict=True):
        for sub in ("warped", "clean"):
            path = out / sub / f"{key}.jpg"
            assert path.read_bytes()[:3] == b"\xff\xd8\xff", f"{path} is not a JPEG"
            assert cv2.imread(str(path)).shape[1::-1] == tuple(truth["warped_size"])
            assert not (out / sub / f"{key}.png").exists()
            assert photo_output(out, sub, key) == path
        instances = (out / "instances" / f"{key}.json").read_text()
        assert "\n" not in instances and json.loads(instances)


def test_a_killed_writers_temporaries_go_once_a_retry_finished_the_photo(raw_photos, tmp_path):
    """A writer killed mid-write (a Ray actor lost) leaves ``.NAME.tmp-PID-HEX``; once the photo's
    record is written by the retry, the run removes it at once, not after --claim-ttl. A temporary
    newer than the record (another run writing the photo again) or of a photo claimed or not done
    is left alone."""
    import os
    import time as _time

    from pipeline.claims import claim_path

    folder, truths, keys, telea = raw_photos
    out = tmp_path / "out"
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    process_folder(folder, out, models, "fp")
    old = _time.time() - 60

    def temporary(sub: str, key: str, suffix: str, mtime: float):
        parent, _, name = key.rpartition("/")
        path = out / sub / parent / f".{name}{suffix}.tmp-4242-deadbeef"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
        os.utime(path, (mtime, mtime))
        return path

    orphans = [temporary("warped", keys[0], ".jpg", old), temporary("photos", keys[1], ".json", old)]
    newer = temporary("warped", keys[2], ".jpg", _time.time() + 60)
    claimed = temporary("clean", keys[3], ".jpg", old)
    claim_path(out, keys[3]).parent.mkdir(parents=True, exist_ok=True)
    claim_path(out, keys[3]).write_text("another-host:1:abcd")
    not_done = temporary("warped", "site/never.jpg", ".jpg", old)
    process_folder(folder, out, models, "fp")  # a rerun: every photo done, nothing redone
    assert not any(path.exists() for path in orphans)
    assert newer.exists() and claimed.exists() and not_done.exists()


def test_coralnet_points_from_the_truth_read_back_through_the_chain(raw_photos, tmp_path):
    folder, truths, keys, telea = raw_photos
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    out = tmp_path / "out"
    process_folder(folder, out, models, "fp")
    rows, rng = [], np.random.default_rng(0)
    for key, t in zip(keys, truths, strict=True):
        w, h = t["warped_size"]
        index, names = label_map([(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]], (w, h))
        seen = np.argwhere(seen_far_from_the_grid(t, (w, h)))[:, ::-1] + 0.5  # (x, y) pixel centres
        warped = seen[rng.choice(len(seen), 40, replace=False)]  # off the grid mask (counted apart)
        raw = transform_points(warped, np.asarray(t["homography_warped_to_raw"]))
        for (x, y), (u, v) in zip(raw, warped, strict=True):
            k = index[int(v), int(u)]
            rows.append((key.rsplit("/", 1)[-1], x, y, names[k - 1] if k else SUBSTRATE))
    rows.append((rows[0][0], 1.0, 1.0, SUBSTRATE))  # on the photo's border: outside the quadrat
    rows.append((rows[0][0], 99999.0, 5.0, SUBSTRATE))  # beyond the photo: reported, not scored
    points = write_coralnet_csv(rows, tmp_path / "points.csv")
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(
        "coralnet,label\n"
        + "".join(f"{c},{c}\n" for c in load_taxonomy().classes())
        + "substrate,substrate\n"
    )
    result = score_points(out, points, mapping)
    assert result["outside_quadrat"] == 1 and result["outside_image"] == 1 and result["on_grid_mask"] == 0
    assert result["scored"] == len(rows) - 2
    assert result["point_accuracy"] > 0.95  # points rounded to whole pixels by the CSV: a few flip at edges
    exported = export_points(out, tmp_path / "ours.csv", points=25, layout="grid")
    assert exported["photos"] == len(keys) and len(read_coralnet_csv(tmp_path / "ours.csv")) == 25 * len(keys)


def test_the_command_refuses_a_model_of_the_wrong_kind(tiny_grid_model, tiny_seg_model, raw_photos, tmp_path):
    from pipeline.process import process

    folder, *_ = raw_photos
    pose_weights, _ = tiny_grid_model
    seg_weights = tiny_seg_model[0] if isinstance(tiny_seg_model, tuple) else tiny_seg_model
    with pytest.raises(QuadratsegError, match="--yolo must be a YOLO segmentation model, got a pose model"):
        process(str(folder), str(tmp_path / "a"), yolo=str(pose_weights))
    with pytest.raises(QuadratsegError, match=r"is a coralseg model \(its card .*\), not gridcorners"):
        process(str(folder), str(tmp_path / "b"), yolo=str(seg_weights), corners=str(seg_weights))
    no_card = tmp_path / "no_card" / "seg.pt"  # without a card, the network's own task says it
    no_card.parent.mkdir()
    shutil.copy(seg_weights, no_card)
    with pytest.raises(QuadratsegError, match="--corners must be a YOLO pose model, got a segment model"):
        process(str(folder), str(tmp_path / "b2"), yolo=str(seg_weights), corners=str(no_card))
    with pytest.raises(QuadratsegError, match="do not exist locally"):
        process(str(folder), str(tmp_path / "c"), yolo=str(tmp_path / "none.pt"))


def test_the_chain_with_a_semantic_model_writes_class_maps_and_block_intervals(
    synthetic_set, tiny_mmseg_model, tmp_path
):
    import cv2

    from pipeline.process import process

    config, checkpoint, _ = tiny_mmseg_model
    folder = synthetic_set / "cvat_exports" / "segmentation" / "images"
    out = tmp_path / "out"
    summary = json.loads(
        process(
            str(folder), str(out), segment="mmseg", mmseg_config=str(config), mmseg_weights=str(checkpoint)
        )
    )
    assert summary["variant"] == "single-stage" and summary["with_cover"] == summary["photos"] == 6
    rows = [r for r in csv.DictReader((out / "cover.csv").open()) if r["level"] == "main_family"]
    assert {r["method"] for r in rows} == {"class-probability-blocks"}
    maps = sorted((out / "class_maps").rglob("*.png"))
    assert len(maps) == 6
    # the cover is the class map's share, read back with OpenCV
    key = maps[0].relative_to(out / "class_maps").as_posix()[: -len(".png")]
    class_map = cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED)
    record = json.loads((out / "photos" / f"{key}.json").read_text())
    for k, estimate in enumerate(record["cover"], start=1):
        assert estimate["pixels"] == int((class_map == k).sum())
        assert estimate["low"] <= estimate["percent"] <= estimate["high"]
    with pytest.raises(QuadratsegError, match="--segment mmseg needs"):
        process(str(folder), str(tmp_path / "x"), segment="mmseg")
    with pytest.raises(QuadratsegError, match="--segment must be yolo, mmseg or both"):
        process(str(folder), str(tmp_path / "x"), segment="all")
    with pytest.raises(QuadratsegError, match="--segment both needs --yolo"):
        process(str(folder), str(tmp_path / "x"), segment="both")


@pytest.mark.slow
def test_a_ray_runs_driver_builds_the_models_on_the_cpu_and_the_actors_on_the_set_device(
    synthetic_set, tiny_mmseg_model, monkeypatch, tmp_path
):
    """QUADRATSEG_DEVICE=cuda on a head node without a GPU (this machine): the driver, which only
    checks the models and reads their classes, builds them on the CPU; the actors' factory keeps the
    device. MMSeg's model refuses CUDA here, so a driver on the set device stops the run."""
    import pipeline.engine_ray
    from pipeline.process import process
    from pipeline.run import EngineOutcome

    config, checkpoint, _ = tiny_mmseg_model
    folder = synthetic_set / "cvat_exports" / "segmentation" / "images"
    import quadratseg.cli

    monkeypatch.setenv("QUADRATSEG_DEVICE", "cuda")
    monkeypatch.setattr(quadratseg.cli, "_settings", None)  # settings an earlier command loaded
    seen = {}

    def engine(items, job, models, options):  # the driver's side only: no actor can run CUDA here
        seen["driver"] = str(next(models.semantic.model.parameters()).device)
        seen["actors"] = options.models_factory.args[1].device
        return EngineOutcome()

    monkeypatch.setattr(pipeline.engine_ray, "run_ray", engine)
    options = {"segment": "mmseg", "mmseg_config": str(config), "mmseg_weights": str(checkpoint)}
    process(str(folder), str(tmp_path / "out"), engine="ray", **options)
    assert seen == {"driver": "cpu", "actors": "cuda"}
    with pytest.raises((RuntimeError, AssertionError), match=r"(?i)cuda|nvidia"):
        process(str(folder), str(tmp_path / "local"), **options)  # the local engine: the set device


def test_a_12_megapixel_photo_goes_through_the_chain(raw_photos, tmp_path):
    import cv2

    folder, truths, keys, _ = raw_photos
    small = cv2.imread(str(folder / keys[0]))
    scale = 4000 / small.shape[1]
    big = cv2.resize(small, (4000, round(small.shape[0] * scale)), interpolation=cv2.INTER_LINEAR)
    (tmp_path / "big").mkdir()
    assert cv2.imwrite(str(tmp_path / "big" / "12 MP ###.jpg"), big)
    truth = {**truths[0], "corners_raw_xy": (np.asarray(truths[0]["corners_raw_xy"]) * scale).tolist()}
    models = ChainModels(TrueColonies([truths[0]]), TrueCorners([truth]))
    summary = process_folder(tmp_path / "big", tmp_path / "out", models, "fp")
    assert summary["with_cover"] == 1 and summary["variant"] == "two-stage"
    record = json.loads((tmp_path / "out" / "photos" / "12 MP ###.jpg.json").read_text())
    assert record["raw_size"] == [4000, big.shape[0]] and big.shape[0] * 4000 >= 12_000_000
    assert record["warped_size"] == truths[0]["warped_size"]


def test_the_chain_fuses_colonies_and_class_maps(synthetic_set, tiny_seg_model, tiny_mmseg_model, tmp_path):
    from pipeline.process import process

    config, checkpoint, _ = tiny_mmseg_model
    weights = tiny_seg_model[0]
    folder = synthetic_set / "cvat_exports" / "segmentation" / "images"
    for method in ("weighted", "voting", "nms"):
        out = tmp_path / method
        summary = json.loads(
            process(
                str(folder),
                str(out),
                yolo=str(weights),
                segment="both",
                ensemble=method,
                mmseg_config=str(config),
                mmseg_weights=str(checkpoint),
                conf=0.01,
            )
        )
        assert summary["with_cover"] == 6
        status = list(csv.DictReader((out / "status.csv").open()))
        assert all(f"{method} ensemble" in r["segmentation"] for r in status)
        if method == "nms":  # colonies, with the instance interval
            assert len(list((out / "instances").rglob("*"))) >= 6
            rows = list(csv.DictReader((out / "cover.csv").open()))
            assert {r["method"] for r in rows} == {"instance-confidence"}
        else:
            assert len(list((out / "class_maps").rglob("*.png"))) == 6
    with pytest.raises(QuadratsegError, match="--ensemble must be one of weighted, voting, nms"):
        process(
            str(folder),
            str(tmp_path / "x"),
            yolo=str(weights),
            segment="both",
            ensemble="mean",
            mmseg_config=str(config),
            mmseg_weights=str(checkpoint),
        )


def test_an_exif_rotated_photo_is_read_upright_through_the_chain(raw_photos, tmp_path):
    """A camera held sideways stores turned pixels and an orientation tag: the chain must see the
    upright photo (same corners, same cover) and record its upright size."""
    from PIL import Image

    folder, truths, keys, telea = raw_photos
    upright = Image.open(folder / keys[1]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned; the reader turns it back 90 degrees clockwise
    for name, image, tag in (
        ("upright", upright, None),
        ("turned", upright.transpose(Image.Transpose.ROTATE_90), 6),
    ):
        (tmp_path / name).mkdir()
        kwargs = {"exif": exif.tobytes()} if tag else {}
        image.save(tmp_path / name / "site_2020_q1.jpg", "JPEG", quality=95, **kwargs)
    covers = {}
    for name in ("upright", "turned"):
        models = ChainModels(
            TrueColonies([truths[1]]), TrueCorners([truths[1]]), TrueGrid([truths[1]]), telea
        )
        summary = process_folder(tmp_path / name, tmp_path / f"out_{name}", models, "fp")
        assert summary["with_cover"] == 1, summary
        record = json.loads((tmp_path / f"out_{name}" / "photos" / "site_2020_q1.jpg.json").read_text())
        assert record["raw_size"] == list(upright.size)
        rows = csv.DictReader((tmp_path / f"out_{name}" / "cover.csv").open())
        covers[name] = {r["label"]: float(r["percent"]) for r in rows if r["level"] == "finegrained"}
    assert covers["upright"] and any(v > 0 for v in covers["upright"].values())
    for label, percent in covers["upright"].items():
        assert covers["turned"][label] == pytest.approx(percent, abs=0.2)


def test_resume_is_keyed_by_the_weights_content_and_every_option(one_photo, fake_weights, tmp_path):
    """Retraining into the same best.pt, or another inference size, redoes the photo; the same
    files and options skip it."""
    from pipeline.process import process

    folder, truth, _ = one_photo
    corners = fake_weights("corners", FakePoseModel([truth]))
    seg = fake_weights("seg", FakeSegModel())
    out = str(tmp_path / "out")

    def run(**options):
        options = {"yolo": str(seg), "corners": str(corners), "warp_size": 256, **options}
        summary = json.loads(process(str(folder), out, **options))
        return summary["processed"], summary["resumed_skipped"]

    assert run() == (1, 0)
    assert run() == (0, 1)
    corners.write_bytes(b"retrained corner weights")  # same path, other model
    assert run() == (1, 0)
    assert run() == (0, 1)
    assert run(yolo_imgsz=320) == (1, 0)
    assert run(yolo_imgsz=320) == (0, 1)
    assert run(yolo_imgsz=320, corners_imgsz=320) == (1, 0)
    # a template the corner model's card names is part of the model: changing it redoes the photo
    from grid_pose_detection.tasks import get_task
    from quadratseg.model_card import write_model_card

    np.save(corners.parent / "kp_template.npy", get_task("gridcorners").template())
    write_model_card(corners, {"template": "kp_template.npy"})
    assert run() == (1, 0)
    assert run() == (0, 1)
    np.save(corners.parent / "kp_template.npy", get_task("gridcorners").template().astype(np.float32))
    assert run() == (1, 0)


def test_two_runs_on_one_output_folder_share_no_temporary_name(one_photo, fake_weights, tmp_path):
    """Another process writing the same outputs holds its temporary files (stood for here by folders
    at the names a fixed scheme would use): this run must still write every output."""
    from pipeline.run import process_folder

    folder, truth, key = one_photo
    out = tmp_path / "out"
    for name in (f"photos/{key}.json.tmp", "cover.csv.tmp", "status.csv.tmp", f"instances/{key}.json.tmp"):
        (out / name).mkdir(parents=True)
    models = ChainModels(TrueColonies([truth]), TrueCorners([truth]))
    summary = process_folder(folder, out, models, "fp")
    assert summary["with_cover"] == 1
    assert json.loads((out / "photos" / f"{key}.json").read_text())["fingerprint"] == "fp"
    assert len(list(csv.DictReader((out / "cover.csv").open()))) > 0


def test_the_warp_size_comes_from_the_model_cards_and_a_disagreeing_one_is_refused(
    one_photo, fake_weights, tmp_path
):
    from pipeline.process import process
    from quadratseg.model_card import write_model_card

    folder, truth, key = one_photo
    corners = fake_weights("corners", FakePoseModel([truth]))
    seg = fake_weights("seg", FakeSegModel())

    def warped_size(out):
        return json.loads((out / "photos" / f"{key}.json").read_text())["warped_size"]

    process(str(folder), str(tmp_path / "default"), yolo=str(seg), corners=str(corners), overlays=False)
    assert warped_size(tmp_path / "default") == [1920, 1920]  # no card: what annotators label
    write_model_card(corners, {"warp_size": 320})
    write_model_card(seg, {"warp_size": 320, "imgsz": 320})
    process(str(folder), str(tmp_path / "card"), yolo=str(seg), corners=str(corners))
    assert warped_size(tmp_path / "card") == [320, 320]
    with pytest.raises(
        QuadratsegError, match=r"--warp-size 1024 disagrees .*--corners 320 px, --yolo 320 px"
    ):
        process(str(folder), str(tmp_path / "x"), yolo=str(seg), corners=str(corners), warp_size=1024)
    process(
        str(folder),
        str(tmp_path / "forced"),
        yolo=str(seg),
        corners=str(corners),
        warp_size=400,
        allow_warp_size_mismatch=True,
    )
    assert warped_size(tmp_path / "forced") == [400, 400]
    write_model_card(seg, {"warp_size": 640})
    with pytest.raises(
        QuadratsegError, match=r"different warped quadrat sizes \(--corners 320 px, --yolo 640 px\)"
    ):
        process(str(folder), str(tmp_path / "y"), yolo=str(seg), corners=str(corners))


class NoColonies:
    """A segmentation stand-in that finds nothing (the cover rows are then 0 for every class)."""

    def __init__(self):
        self.names = {0: "Porites", 1: "Acropora"}

    def predict(self, image):
        return []


@pytest.fixture
def survey_folders(synthetic_set, tmp_path):
    """Warped quadrats stored as a survey: site/year/Q1.jpg (names that say nothing)."""
    images = sorted((synthetic_set / "cvat_exports" / "segmentation" / "images").rglob("*.jpg"))
    folder = tmp_path / "survey"
    keys = ["Tiahura/2019/Q1.jpg", "Tiahura/2019/Q2.jpg", "Tiahura/2020/Q1.jpg", "Haapiti/2019/Q1.jpg"]
    for image, key in zip(images[:4], keys, strict=True):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / key)
    return folder


def test_site_and_year_come_from_a_metadata_csv_then_folders_then_names(survey_folders, tmp_path, caplog):
    out = tmp_path / "out"
    process_folder(survey_folders, out, ChainModels(NoColonies()), "fp")
    rows = list(csv.DictReader((out / "cover.csv").open()))
    places = {(r["photo"], r["site"], r["year"], r["quadrat"]) for r in rows}
    assert places == {
        ("Tiahura/2019/Q1.jpg", "Tiahura", "2019", "Q1"),
        ("Tiahura/2019/Q2.jpg", "Tiahura", "2019", "Q2"),
        ("Tiahura/2020/Q1.jpg", "Tiahura", "2020", "Q1"),
        ("Haapiti/2019/Q1.jpg", "Haapiti", "2019", "Q1"),
    }
    summary = list(csv.DictReader((out / "cover_summary.csv").open()))
    groups = {(r["site"], r["year"]): int(r["quadrats"]) for r in summary if r["label"] == "Porites"}
    assert groups == {("Haapiti", "2019"): 1, ("Tiahura", "2019"): 2, ("Tiahura", "2020"): 1}
    assert "covers the variation between quadrats only" in (out / "report.html").read_text()
    # a metadata CSV wins (by key, or by file name when unique); a photo it misses falls back
    metadata = tmp_path / "meta.csv"
    metadata.write_text("photo,site,year,quadrat\nTiahura/2019/Q2.jpg,Temae,2018,T7\n")
    shutil.copy(survey_folders / "Tiahura/2019/Q1.jpg", survey_folders / "loose.jpg")
    with caplog.at_level("WARNING"):
        process_folder(survey_folders, tmp_path / "meta", ChainModels(NoColonies()), "fp", metadata=metadata)
    rows = list(csv.DictReader((tmp_path / "meta" / "cover.csv").open()))
    places = {r["photo"]: (r["site"], r["year"], r["quadrat"]) for r in rows}
    assert places["Tiahura/2019/Q2.jpg"] == ("Temae", "2018", "T7")
    assert places["Tiahura/2019/Q1.jpg"] == ("Tiahura", "2019", "Q1")
    assert places["loose.jpg"] == ("", "", "")
    assert "1 photo has no site or year" in caplog.text and "loose.jpg" in caplog.text
    # a row that matches no photo is named, not dropped silently
    metadata.write_text(
        "photo,site,year,quadrat\nTiahura/2019/Q2.jpg,Temae,2018,T7\nTemae/Q9.jpg,Temae,2018,9\n"
    )
    caplog.clear()
    with caplog.at_level("WARNING"):
        process_folder(survey_folders, tmp_path / "meta2", ChainModels(NoColonies()), "fp", metadata=metadata)
    assert "metadata row Temae/Q9.jpg matches no photo: not used" in caplog.text
    with pytest.raises(QuadratsegError, match="site, year and quadrat"):
        bad = tmp_path / "bad.csv"
        bad.write_text("photo,place\na.jpg,x\n")
        process_folder(survey_folders, tmp_path / "bad", ChainModels(NoColonies()), "fp", metadata=bad)


class BrightnessColony:
    """One Porites colony over the left part of the photo, its width the photo's mean brightness
    (so different photos get different covers and a copied photo the same)."""

    def __init__(self):
        self.names = {0: "Porites", 1: "Acropora"}

    def predict(self, image):
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[:, : max(1, round(w * float(image.mean()) / 255))] = True
        return [Instance.from_mask("Porites", 0.9, mask, (0, 0))]


def test_a_quadrat_photographed_twice_counts_once_in_the_summary(survey_folders, tmp_path, caplog):
    """A retake of Tiahura 2019 Q1 (named so in the metadata) was counted as a third quadrat: the
    mean over quadrats weighted Q1 twice, ``quadrats`` said 3 and the t interval was too narrow. The
    photos of one quadrat now make one value (their mean), the summary counts distinct quadrats and
    names its photos, and the run warns."""
    shutil.copy(survey_folders / "Tiahura/2019/Q1.jpg", survey_folders / "Tiahura/2019/Q1b.jpg")
    metadata = tmp_path / "meta.csv"
    metadata.write_text("photo,site,year,quadrat\nTiahura/2019/Q1b.jpg,Tiahura,2019,Q1\n")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        process_folder(survey_folders, out, ChainModels(BrightnessColony()), "fp", metadata=metadata)
    rows = [
        r
        for r in csv.DictReader((out / "cover.csv").open())
        if (r["site"], r["year"], r["level"], r["label"]) == ("Tiahura", "2019", "finegrained", "Porites")
    ]
    percent = {r["photo"]: float(r["percent"]) for r in rows}
    assert sorted(percent) == ["Tiahura/2019/Q1.jpg", "Tiahura/2019/Q1b.jpg", "Tiahura/2019/Q2.jpg"]
    assert percent["Tiahura/2019/Q1.jpg"] != percent["Tiahura/2019/Q2.jpg"]
    summary = next(
        r
        for r in csv.DictReader((out / "cover_summary.csv").open())
        if (r["site"], r["year"], r["level"], r["label"]) == ("Tiahura", "2019", "finegrained", "Porites")
    )
    quadrats = [percent["Tiahura/2019/Q1.jpg"], percent["Tiahura/2019/Q2.jpg"]]
    assert int(summary["quadrats"]) == 2 and int(summary["photos"]) == 3
    assert float(summary["mean"]) == pytest.approx(np.mean(quadrats), abs=1e-3)
    assert float(summary["se"]) == pytest.approx(np.std(quadrats, ddof=1) / np.sqrt(2), abs=1e-3)
    assert "Tiahura 2019 quadrat Q1: 2 photos" in caplog.text


def test_a_model_trained_at_the_extended_level_reports_extended_rows_not_genera(
    survey_folders, tmp_path, caplog
):
    """Every extended class name (Acropora, ..., Merulinidae, Other) is also a genus name, so a
    10-class extended model (Banggai's) was reported at the finegrained level: cover.csv said
    'finegrained Merulinidae' for the whole family. The level now comes from the model's card; a
    model without one whose classes fit several levels is reported at the finest, with a warning."""
    from engine_models import untrained_seg_weights

    from pipeline.process import process
    from quadratseg.model_card import model_card_path, write_model_card

    extended = load_taxonomy().classes("extended")
    weights = untrained_seg_weights(tmp_path / "banggai" / "best.pt", extended)
    write_model_card(weights, {"task": "coralseg", "classes": extended, "level": "extended"})
    out = tmp_path / "out"
    process(str(survey_folders), str(out), yolo=str(weights), yolo_imgsz=64, conf=0.01)
    rows = list(csv.DictReader((out / "cover.csv").open()))
    assert {r["level"] for r in rows} == {"extended", "main_family", "agnostic"}
    record = json.loads(next((out / "photos").rglob("*.json")).read_text())
    assert record["level"] == "extended"
    # a card that names a level the classes are not of stops the run before any photo
    write_model_card(weights, {"task": "coralseg", "classes": extended, "level": "main_family"})
    with pytest.raises(QuadratsegError, match="main_family"):
        process(str(survey_folders), str(tmp_path / "bad"), yolo=str(weights), yolo_imgsz=64)
    assert not list((tmp_path / "bad").rglob("*.json"))
    # without a card's level: the finest level, named as a guess
    model_card_path(weights).unlink()
    write_model_card(weights, {"task": "coralseg", "classes": extended})
    with caplog.at_level("WARNING"):
        process(str(survey_folders), str(tmp_path / "guess"), yolo=str(weights), yolo_imgsz=64, conf=0.01)
    assert "fit the taxonomy levels finegrained, extended" in caplog.text


def test_the_fiftyone_pull_parses_photo_places_with_the_same_parser():
    from quadratseg.fiftyone_io import parse_quadrat_name

    assert parse_quadrat_name("MooreaE2B_2020_05.jpg") == {
        "area": "MooreaE2B",
        "year": 2020,
        "quadrat_id": "05",
    }
    assert parse_quadrat_name("Tiahura/2019/Q1.jpg") == {"area": "Tiahura", "year": 2019, "quadrat_id": "Q1"}
    criobe = "TIAHURA###10m###20190412_IMG_0042_3.jpg"
    assert parse_quadrat_name(criobe) == {"area": "TIAHURA", "year": 2019, "quadrat_id": "3"}
    assert parse_quadrat_name("IMG_0042.jpg") == {}


class WholeQuadratColony(TruthByOrder):
    """One Porites colony covering the whole warped quadrat, and the true colonies beside it."""

    def __init__(self, truths):
        super().__init__(truths)
        self.names = dict(enumerate(load_taxonomy().classes()))

    def predict(self, image):
        h, w = image.shape[:2]
        return [Instance.from_mask("Porites", 0.8, np.ones((h, w), bool), (0, 0))]


def test_areas_in_cm2_are_over_the_whole_quadrat_and_each_colony_is_a_row(raw_photos, tmp_path):
    """A quadrat of 100 cm fully covered by one colony is 10 000 cm^2 of coral even though the grid
    hid part of it (before: the observed pixels only, ~20 % low); colonies.csv has one row per
    colony with its class at every level, area and perimeter in px and cm, and confidence."""
    from quadratseg.cover_table import outline_length_px
    from quadratseg.photo_meta import photo_place

    folder, truths, keys, telea = raw_photos
    full = ChainModels(WholeQuadratColony(truths), TrueCorners(truths), TrueGrid(truths), telea)
    out = tmp_path / "full"
    process_folder(folder, out, full, "fp", quadrat_cm=100.0)
    rows = [r for r in csv.DictReader((out / "cover.csv").open()) if r["level"] == "finegrained"]
    porites = [r for r in rows if r["label"] == "Porites"]
    assert len(porites) == len(keys)
    for row in porites:
        share = float(row["observed_share"])
        assert 0.5 < share < 0.95  # the grid hid part of the quadrat
        assert float(row["percent"]) == 100.0
        assert float(row["area_cm2"]) == pytest.approx(10_000.0)
        assert float(row["observed_area_cm2"]) == pytest.approx(10_000.0 * share, rel=1e-3)
        assert row["miss_pp"] == "0.0"
    columns = next(csv.reader((out / "cover.csv").open()))
    from dataclasses import fields

    from quadratseg.cover import CoverEstimate

    assert {f.name for f in fields(CoverEstimate)} <= set(columns)  # every field of the estimate
    colonies = list(csv.DictReader((out / "colonies.csv").open()))
    assert [(c["photo"], c["colony"], c["finegrained"], c["agnostic"]) for c in colonies] == [
        (key, "0", "Porites", load_taxonomy().map_label("Porites", "agnostic")) for key in keys
    ]
    assert float(colonies[0]["area_cm2"]) == pytest.approx(10_000.0)
    # the true colonies: one row each, areas and outlines of their masks
    out = tmp_path / "truth"
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    process_folder(folder, out, models, "fp", quadrat_cm=50.0)
    colonies = list(csv.DictReader((out / "colonies.csv").open()))
    assert len(colonies) == sum(len(t["corals"]) for t in truths)
    taxonomy = load_taxonomy()
    for key, t in zip(keys, truths, strict=True):
        mine = [c for c in colonies if c["photo"] == key]
        w, h = t["warped_size"]
        cm_per_px = 50.0 / w
        for c, coral in zip(mine, t["corals"], strict=True):
            inst = Instance.from_polygons(coral["label"], 0.9, [np.asarray(coral["polygon_xy"])], (w, h))
            assert (c["finegrained"], c["main_family"]) == (
                coral["label"],
                taxonomy.map_label(coral["label"], "main_family"),
            )
            assert int(c["area_px"]) == inst.area
            assert float(c["area_cm2"]) == pytest.approx(inst.area * cm_per_px**2, abs=0.01)
            assert float(c["perimeter_px"]) == round(outline_length_px(inst.box_mask), 1)
            assert float(c["perimeter_cm"]) == pytest.approx(float(c["perimeter_px"]) * cm_per_px, abs=0.01)
            assert float(c["confidence"]) == 0.9
            assert (c["site"], c["year"], c["quadrat"]) == tuple(photo_place(key).values())


class EachColonyTwice(TruthByOrder):
    """Each true colony answered twice, as a model whose suppression works per class leaves it: its genus
    at 0.9 and another genus at 0.4; and a low-score (0.3) outline around them all (their union grown by
    2 px)."""

    def __init__(self, truths):
        super().__init__(truths)
        self.names = dict(enumerate(load_taxonomy().classes()))

    def predict(self, image):
        t = self.next_truth()
        frame = (image.shape[1], image.shape[0])
        import cv2

        union = np.zeros(image.shape[:2], np.uint8)
        for c in t["corals"]:
            union |= Instance.from_polygons("x", 1.0, [np.asarray(c["polygon_xy"])], frame).within(
                (0, 0, *frame)
            )
        union = cv2.dilate(union, np.ones((5, 5), np.uint8)).astype(bool)
        out = [Instance.from_mask("Acropora", 0.3, union, (0, 0))]
        for c in t["corals"]:
            ring = [np.asarray(c["polygon_xy"])]
            other = "Pocillopora" if c["label"] != "Pocillopora" else "Montipora"
            out += [
                Instance.from_polygons(other, 0.4, ring, frame),
                Instance.from_polygons(c["label"], 0.9, ring, frame),
            ]
        return out


def test_a_colony_answered_twice_is_one_row_of_colonies_csv_and_of_the_cover(raw_photos, tmp_path):
    """A pixel of the reef is one colony in every output: a colony answered twice with two genera is
    one row of colonies.csv (the surer genus) and of the instances file, and an outline around the
    colonies at a lower score, which keeps under half its pixels, is left out; the cover is the true
    colonies' (before: two rows per colony and the outline's row in colonies.csv, and the outline's
    ring counted as Acropora cover)."""
    folder, truths, keys, telea = raw_photos
    out = tmp_path / "out"
    models = ChainModels(EachColonyTwice(truths), TrueCorners(truths), TrueGrid(truths), telea)
    process_folder(folder, out, models, "fp", quadrat_cm=50.0)
    truth_out = tmp_path / "truth"
    process_folder(
        folder,
        truth_out,
        ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea),
        "fp",
        quadrat_cm=50.0,
    )

    def table(folder, name, columns):
        return sorted(tuple(r[c] for c in columns) for r in csv.DictReader((folder / name).open()))

    colony_columns = ("photo", "finegrained", "area_px", "perimeter_px")
    assert table(out, "colonies.csv", colony_columns) == table(truth_out, "colonies.csv", colony_columns)
    cover_columns = ("photo", "level", "label", "pixels", "percent")
    assert table(out, "cover.csv", cover_columns) == table(truth_out, "cover.csv", cover_columns)
    for key, t in zip(keys, truths, strict=True):
        answered = json.loads((out / "instances" / f"{key}.json").read_text())
        assert sorted(c["label"] for c in answered) == sorted(c["label"] for c in t["corals"])


class HalfPorites(TruthByOrder):
    """A semantic-model stand-in: Porites (probability 0.9) on the left half of the quadrat, or on
    the right half for the photos listed in ``right`` (by read order), background elsewhere."""

    def __init__(self, count, right=()):
        super().__init__(list(range(count)))
        self.classes, self.right = ["background", "Porites", "Acropora"], set(right)

    def predict_probs(self, image):
        h, w = image.shape[:2]
        porites = np.zeros((h, w), bool)
        if self.next_truth() in self.right:
            porites[:, w // 2 :] = True
        else:
            porites[:, : w // 2] = True
        probs = np.full((3, h, w), 0.05, np.float32)
        probs[1][porites] = 0.9
        probs[0][~porites] = 0.9
        return probs


def _points_csv(path, rows):
    return write_coralnet_csv(rows, path)


def _mapping_csv(path):
    path.write_text(
        "coralnet,label\n"
        + "".join(f"{c},{c}\n" for c in load_taxonomy().classes())
        + "substrate,substrate\n"
    )
    return path


def test_coralnet_scores_a_semantic_run_from_its_class_maps_and_matches_photos_by_key(
    survey_folders, tmp_path
):
    """Porites covers the left half of three quadrats named Q1.jpg in different folders and the right
    half of one (Tiahura/2020/Q1.jpg): points are read from the class maps (before: from an empty
    colony list, every Porites point 'substrate'), each photo by its key."""
    keys = sorted(p.relative_to(survey_folders).as_posix() for p in survey_folders.rglob("*.jpg"))
    right = keys.index("Tiahura/2020/Q1.jpg")
    out = tmp_path / "out"
    process_folder(survey_folders, out, ChainModels(None, semantic=HalfPorites(len(keys), [right])), "fp")
    rows = []
    for k, key in enumerate(keys):
        for x in (30.0, 60.0, 190.0, 220.0):
            for y in (40.0, 128.0, 200.0):
                on_right = x > 128
                rows.append((key, x, y, "Porites" if on_right == (k == right) else SUBSTRATE))
    result = score_points(out, _points_csv(tmp_path / "points.csv", rows), _mapping_csv(tmp_path / "map.csv"))
    assert result["scored"] == len(rows) == 48
    assert result["point_accuracy"] == 1.0
    assert result["per_label"]["Porites"] == {"points": 24, "accuracy": 1.0, "predicted_as": {"Porites": 24}}
    # a bare file name that three photos share is not guessed: counted apart and named
    ambiguous = [("Q1.jpg", 30.0, 40.0, "Porites"), ("Q2.jpg", 30.0, 40.0, "Porites")]
    result = score_points(out, _points_csv(tmp_path / "ambiguous.csv", ambiguous), tmp_path / "map.csv")
    assert (result["scored"], result["on_ambiguous_names"]) == (1, 1)
    assert result["ambiguous_names"] == {"Q1.jpg": 3}
    # the export names each photo by its key, and reads the class maps
    export_points(out, tmp_path / "ours.csv", points=16, layout="grid", name="key")
    exported = read_coralnet_csv(tmp_path / "ours.csv")
    assert sorted({p.name for p in exported}) == keys
    for p in exported:
        porites = (p.x > 128) == (p.name == "Tiahura/2020/Q1.jpg")
        assert p.code == ("Porites" if porites else SUBSTRATE)


def _grid_and_seen_points(keys, truths):
    """Per photo three CoralNet points on inner grid intersections (substrate) and one on a pixel
    the grid did not hide (its true label), raw photo pixels."""
    rows = []
    for key, t in zip(keys, truths, strict=True):
        grid = np.asarray(t["grid_warped_xy"])[[30, 40, 50]]  # three inner intersections: on the strings
        raw = transform_points(grid, np.asarray(t["homography_warped_to_raw"]))
        rows.extend((key, x, y, SUBSTRATE) for x, y in raw)
        w, h = t["warped_size"]
        index, names = label_map([(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]], (w, h))
        seen = np.argwhere(seen_far_from_the_grid(t, (w, h)))
        v, u = seen[len(seen) // 2]  # one pixel the grid did not hide
        ((x, y),) = transform_points(
            np.array([[u + 0.5, v + 0.5]]), np.asarray(t["homography_warped_to_raw"])
        )
        k = index[v, u]
        rows.append((key, x, y, names[k - 1] if k else SUBSTRATE))
    return rows


def test_coralnet_points_on_the_grid_mask_are_counted_apart(raw_photos, tmp_path):
    folder, truths, keys, telea = raw_photos
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    out = tmp_path / "out"
    process_folder(folder, out, models, "fp")
    rows = _grid_and_seen_points(keys, truths)
    result = score_points(out, _points_csv(tmp_path / "p.csv", rows), _mapping_csv(tmp_path / "map.csv"))
    assert (result["on_grid_mask"], result["scored"]) == (3 * len(keys), len(keys))
    assert all(p["on_grid_mask"] == 3 for p in result["per_photo"])


def seen_far_from_the_grid(truth, size, margin_px=4):
    """(H, W) bool: pixels at least ``margin_px`` from the true grid's mask and the quadrat's border
    (whole-pixel rounding of CoralNet's Row/Column cannot move a point from there onto either)."""
    import cv2

    from grid_inpainting.masks import default_line_width, grid_mask

    mask = grid_mask(np.asarray(truth["grid_warped_xy"]), size, default_line_width(size))
    near = cv2.dilate(mask.astype(np.uint8), np.ones((2 * margin_px + 1,) * 2, np.uint8)) > 0
    near[:margin_px], near[-margin_px:], near[:, :margin_px], near[:, -margin_px:] = True, True, True, True
    return ~near


def test_a_model_trained_on_tiles_is_fed_tiles_of_the_warped_quadrat(one_photo, fake_weights, tmp_path):
    """A YOLO model whose card says it learned 160 px tiles of 320 px quadrats sees 160 px windows of
    the chain's 320 px quadrat (before: the whole quadrat, at a scale it never saw)."""
    from pipeline.process import process
    from quadratseg.model_card import write_model_card

    folder, truth, _ = one_photo
    corners = fake_weights("corners", FakePoseModel([truth]))
    seg_model = FakeSegModel()
    seg = fake_weights("seg", seg_model)
    write_model_card(seg, {"task": "coralseg", "imgsz": 160, "warp_size": 320, "tile": 160})
    process(str(folder), str(tmp_path / "out"), yolo=str(seg), corners=str(corners), overlays=False)
    assert seg_model.shapes == [(160, 160, 3)] * 9  # overlapping windows (0.2): 3 x 3 over 320 px
    write_model_card(seg, {"tile": 0, "imgsz": 320})
    process(str(folder), str(tmp_path / "whole"), yolo=str(seg), corners=str(corners), overlays=False)
    assert seg_model.shapes[9:] == [(320, 320, 3)]


def test_the_colonies_threshold_comes_from_the_model_card_unless_given(one_photo, fake_weights, tmp_path):
    """The colony threshold a trained model's card recommends (measured on its val split) is the one
    the chain predicts with, and run.json says which it was and where it came from; a threshold
    given on the command line wins; a card with none falls to 0.25, and says so."""
    import json

    from pipeline.process import process
    from quadratseg.model_card import write_model_card

    folder, truth, _ = one_photo
    corners = fake_weights("corners", FakePoseModel([truth]))
    seg_model = FakeSegModel()
    seg = fake_weights("seg", seg_model)
    runs = {}
    for name, card, given in (("card", 0.07, None), ("given", 0.07, 0.5), ("none", None, None)):
        write_model_card(seg, {"conf": card})
        out = tmp_path / name
        process(str(folder), str(out), yolo=str(seg), corners=str(corners), overlays=False, conf=given)
        runs[name] = (seg_model.confs[-1], json.loads((out / "run.json").read_text())["colony_conf"])
    assert runs == {
        "card": (0.07, {"conf": 0.07, "source": "model card"}),
        "given": (0.5, {"conf": 0.5, "source": "given"}),
        "none": (0.25, {"conf": 0.25, "source": "default"}),
    }
    write_model_card(seg, {"conf": 1.5})
    with pytest.raises(QuadratsegError, match="conf must be a number in"):
        process(str(folder), str(tmp_path / "bad"), yolo=str(seg), corners=str(corners), overlays=False)


class HalfFamily(HalfPorites):
    """HalfPorites at the main_family level: Poritidae on the left half of every quadrat."""

    def __init__(self, count):
        super().__init__(count)
        self.classes = ["background", "Poritidae", "Acroporidae"]


def test_coralnet_scores_a_family_model_against_finegrained_points_at_the_models_level(
    survey_folders, tmp_path
):
    """Truth points say Porites, the model says Poritidae at the same pixels: every point is right
    (before: 0 of 24 Porites points right, accuracy 0.5 over all points)."""
    keys = sorted(p.relative_to(survey_folders).as_posix() for p in survey_folders.rglob("*.jpg"))
    out = tmp_path / "out"
    process_folder(survey_folders, out, ChainModels(None, semantic=HalfFamily(len(keys))), "fp")
    rows = [
        (key, x, y, "Porites" if x < 128 else SUBSTRATE)
        for key in keys
        for x in (30.0, 60.0, 190.0, 220.0)
        for y in (40.0, 128.0, 200.0)
    ]
    result = score_points(out, _points_csv(tmp_path / "p.csv", rows), _mapping_csv(tmp_path / "map.csv"))
    assert (result["scored"], result["point_accuracy"]) == (48, 1.0)
    assert result["per_label"]["Poritidae"] == {
        "points": 24,
        "accuracy": 1.0,
        "predicted_as": {"Poritidae": 24},
    }
    poritidae = [p for p in result["per_photo"] if p["label"] == "Poritidae"]
    assert [(p["point_percent"], p["dense_percent"]) for p in poritidae] == [(50.0, 50.0)] * 4


class FamilyColonies(TruthByOrder):
    """A main_family colony model: on each photo one colony of the label given for it, whole quadrat."""

    def __init__(self, labels):
        super().__init__(labels)
        self.names = dict(enumerate(load_taxonomy().classes("main_family")))

    def predict(self, image):
        h, w = image.shape[:2]
        return [Instance.from_mask(self.next_truth(), 0.8, np.ones((h, w), bool), (0, 0))]


def test_colonies_and_cover_rows_are_at_the_models_level_on_every_photo(survey_folders, tmp_path):
    """A family model's Merulinidae colony (a name the finegrained level has too) fills no
    finegrained column (before: finegrained and extended filled on that photo only)."""
    out = tmp_path / "out"
    labels = ["Merulinidae", "Acroporidae", "Poritidae", "Merulinidae"]
    process_folder(survey_folders, out, ChainModels(FamilyColonies(labels)), "fp")
    colonies = list(csv.DictReader((out / "colonies.csv").open()))
    assert [(c["finegrained"], c["extended"], c["main_family"]) for c in colonies] == [
        ("", "", label) for label in labels
    ]
    levels = {r["level"] for r in csv.DictReader((out / "cover.csv").open())}
    assert levels == {"main_family", "agnostic"}


def test_points_read_only_what_the_current_run_made(raw_photos, tmp_path):
    """A photo redone without --grid does not keep its old grid mask for CoralNet (before: every
    point on the former grid still counted on_grid_mask), and the records of photos no longer in
    IMAGES, or that failed in the current run, are left out of score and export, and named."""
    folder, truths, keys, telea = raw_photos
    out = tmp_path / "out"
    process_folder(
        folder, out, ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea), "a"
    )
    assert len(list((out / "grid_masks").rglob("*.png"))) == len(keys)
    points = _points_csv(tmp_path / "p.csv", _grid_and_seen_points(keys, truths))
    assert score_points(out, points, _mapping_csv(tmp_path / "map.csv"))["on_grid_mask"] == 3 * len(keys)
    # the same photos, two-stage now (another fingerprint), one of them gone from IMAGES
    (folder / keys[0]).unlink()
    process_folder(folder, out, ChainModels(TrueColonies(truths[1:]), TrueCorners(truths[1:])), "b")
    left = [p.relative_to(out / "grid_masks").as_posix() for p in (out / "grid_masks").rglob("*.png")]
    assert left == [f"{keys[0]}.png"]  # only the gone photo's, whose record is left out
    result = score_points(out, points, tmp_path / "map.csv")
    assert (result["on_grid_mask"], result["scored"]) == (0, 4 * (len(keys) - 1))
    assert (result["on_photos_not_processed"], result["records_left_out"]) == (4, [keys[0]])
    export = export_points(out, tmp_path / "ours.csv", points=4, layout="grid", name="key")
    assert export["photos"] == len(keys) - 1
    assert sorted({p.name for p in read_coralnet_csv(tmp_path / "ours.csv")}) == sorted(keys[1:])


def test_a_model_class_outside_the_taxonomy_is_refused_before_any_photo(one_photo, fake_weights, tmp_path):
    """Before: every photo was processed, then the tables crashed on the unknown label."""
    from pipeline.process import process

    folder, _, _ = one_photo
    model = FakeSegModel()
    model.names = {0: "Porites", 1: "Acroproa"}
    seg = fake_weights("seg", model)
    out = tmp_path / "out"
    with pytest.raises(QuadratsegError, match=r"Acroproa.*Acropora"):
        process(str(folder), str(out), yolo=str(seg), warp_size=256)
    assert not (out / "photos").exists()


def test_the_fingerprint_follows_an_mmseg_configs_base_chain_and_leaves_table_options_out(
    tmp_path, monkeypatch
):
    """Editing a config's _base_ file reprocesses (before: only the top file was hashed); a bundled
    config given by name is found as the runner finds it (before: an error after the models were
    built); --quadrat-cm and --metadata only change the tables, rebuilt from the records (before:
    every photo redone); the package version is part of the fingerprint."""
    import quadratseg
    from DINOv2_mmseg.runner import CONFIG_DIR
    from pipeline.run import RunConfig, run_fingerprint

    (tmp_path / "base.py").write_text("model = dict(type='EncoderDecoder', test_cfg=dict(mode='slide'))\n")
    top = tmp_path / "top.py"
    top.write_text("_base_ = ['./base.py']\ncrop_size = (64, 64)\n")
    config = RunConfig(segment="mmseg", mmseg_config=str(top))
    before = run_fingerprint(config)
    (tmp_path / "base.py").write_text("model = dict(type='EncoderDecoder', test_cfg=dict(mode='whole'))\n")
    assert run_fingerprint(config) != before
    bundled = sorted(CONFIG_DIR.glob("*.py"))[0]
    by_name = run_fingerprint(RunConfig(segment="mmseg", mmseg_config=bundled.name))
    assert by_name == run_fingerprint(RunConfig(segment="mmseg", mmseg_config=str(bundled)))
    metadata = tmp_path / "m.csv"
    metadata.write_text("photo,site,year,quadrat\n")
    plain = run_fingerprint(RunConfig())
    assert run_fingerprint(RunConfig(quadrat_cm=50.0, metadata=str(metadata))) == plain
    assert run_fingerprint(RunConfig(overlays=False)) != plain  # overlays are per-photo images
    monkeypatch.setattr(quadratseg, "__version__", "0.0.0-other")
    assert run_fingerprint(RunConfig()) != plain


def test_a_yolo_inference_size_at_another_scale_than_the_model_learned_is_refused(
    one_photo, fake_weights, tmp_path
):
    """160 px tiles of 320 px quadrats learned at imgsz 160: --yolo-imgsz 320 would show colonies
    twice as large (before: it ran silently); the whole-quadrat model likewise."""
    from pipeline.process import process
    from quadratseg.model_card import write_model_card

    folder, truth, _ = one_photo
    corners = fake_weights("corners", FakePoseModel([truth, truth]))
    seg_model = FakeSegModel()
    seg = fake_weights("seg", seg_model)
    write_model_card(seg, {"task": "coralseg", "imgsz": 160, "warp_size": 320, "tile": 160})
    options = {"yolo": str(seg), "corners": str(corners), "overlays": False}
    with pytest.raises(QuadratsegError, match=r"--tile 160 at --imgsz 320 feeds the model at a scale of 2"):
        process(str(folder), str(tmp_path / "tiles"), yolo_imgsz=320, **options)
    write_model_card(seg, {"tile": 0, "imgsz": 320})
    with pytest.raises(QuadratsegError, match=r"scale of 2, but it was trained at 1"):
        process(str(folder), str(tmp_path / "whole"), yolo_imgsz=640, **options)
    process(str(folder), str(tmp_path / "ok"), yolo_imgsz=320, **options)
    process(str(folder), str(tmp_path / "forced"), yolo_imgsz=640, allow_scale_mismatch=True, **options)
    assert len(seg_model.shapes) == 2


def test_single_stage_photos_are_resized_to_the_warp_size_and_points_follow(survey_folders, tmp_path):
    """Already-warped 256 px quadrats with --warp-size 512 are segmented at 512 px (before: at their
    own size, with cm per pixel taken as if they were 512 px), and a CoralNet point in the photo's
    own pixels still reads the label under it."""
    keys = sorted(p.relative_to(survey_folders).as_posix() for p in survey_folders.rglob("*.jpg"))
    out = tmp_path / "out"
    semantic = HalfPorites(len(keys))
    summary = process_folder(
        survey_folders, out, ChainModels(None, semantic=semantic), "fp", warp_size=(512, 512)
    )
    assert summary["with_cover"] == len(keys)
    record = json.loads((out / "photos" / f"{keys[0]}.json").read_text())
    assert (record["raw_size"], record["warped_size"]) == ([256, 256], [512, 512])
    rows = [
        (key, x, 100.0, "Porites" if x < 128 else SUBSTRATE)
        for key in keys
        for x in (20.0, 100.0, 150.0, 240.0)
    ]
    result = score_points(out, _points_csv(tmp_path / "p.csv", rows), _mapping_csv(tmp_path / "map.csv"))
    assert (result["scored"], result["point_accuracy"]) == (16, 1.0)


def test_failures_and_the_score_report_are_replaced_whole_not_rewritten_in_place(survey_folders, tmp_path):
    """failures.csv and coralnet score --report are written under a temporary name and renamed (a
    reader holding the old file keeps a whole one; before: truncated and rewritten in place)."""
    from pipeline.coralnet import score

    keys = sorted(p.relative_to(survey_folders).as_posix() for p in survey_folders.rglob("*.jpg"))
    out = tmp_path / "out"
    models = ChainModels(None, semantic=HalfPorites(len(keys)))
    process_folder(survey_folders, out, models, "fp")
    failures = (out / "failures.csv").stat().st_ino
    models = ChainModels(None, semantic=HalfPorites(len(keys)))
    process_folder(survey_folders, out, models, "fp2")
    assert (out / "failures.csv").stat().st_ino != failures
    report = tmp_path / "report.json"
    report.write_text("{}")
    before = report.stat().st_ino
    rows = [(key, 30.0, 40.0, "Porites") for key in keys]
    score(
        str(out),
        str(_points_csv(tmp_path / "p.csv", rows)),
        str(_mapping_csv(tmp_path / "m.csv")),
        str(report),
    )
    assert report.stat().st_ino != before
    assert json.loads(report.read_text())["scored"] == 4


def test_the_coralnet_export_names_photos_as_coralnet_does(survey_folders, tmp_path):
    """CoralNet's Name is the image's file name (as in its own exports); the key goes in a Key
    column. File names several photos share are refused unless --name key (before: Name held the
    key, which CoralNet never matches)."""
    keys = sorted(p.relative_to(survey_folders).as_posix() for p in survey_folders.rglob("*.jpg"))
    out = tmp_path / "out"
    process_folder(survey_folders, out, ChainModels(None, semantic=HalfPorites(len(keys))), "fp")
    with pytest.raises(QuadratsegError, match=r"Q1.jpg \(3 photos\).*--name key"):
        export_points(out, tmp_path / "x.csv", points=4, layout="grid")
    export_points(out, tmp_path / "keys.csv", points=4, layout="grid", name="key")
    assert sorted({p.name for p in read_coralnet_csv(tmp_path / "keys.csv")}) == keys
    (survey_folders / "Tiahura/2019/Q1.jpg").rename(survey_folders / "Tiahura/2019/Q3.jpg")
    (survey_folders / "Tiahura/2020/Q1.jpg").rename(survey_folders / "Tiahura/2020/Q4.jpg")
    out = tmp_path / "unique"
    process_folder(survey_folders, out, ChainModels(None, semantic=HalfPorites(len(keys))), "fp")
    export_points(out, tmp_path / "names.csv", points=4, layout="grid")
    with (tmp_path / "names.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted({(r["Name"], r["Key"]) for r in rows}) == [
        ("Q1.jpg", "Haapiti/2019/Q1.jpg"),
        ("Q2.jpg", "Tiahura/2019/Q2.jpg"),
        ("Q3.jpg", "Tiahura/2019/Q3.jpg"),
        ("Q4.jpg", "Tiahura/2020/Q4.jpg"),
    ]
    result = score_points(out, tmp_path / "names.csv", _mapping_csv(tmp_path / "map.csv"))
    assert (result["scored"], result["point_accuracy"]) == (16, 1.0)


def test_the_report_says_how_many_colonies_the_size_histogram_leaves_out(survey_folders, tmp_path):
    """Colonies under 1 cm^2 are below the histogram's first bin: the figure's caption counts them
    (before: left out silently)."""
    out = tmp_path / "out"
    labels = ["Merulinidae", "Acroporidae", "Poritidae", "Merulinidae"]
    process_folder(survey_folders, out, ChainModels(FamilyColonies(labels)), "fp", quadrat_cm=0.5)
    assert "4 colonies under 1 cm^2 not shown" in (out / "report.html").read_text()


def test_an_ensemble_of_a_genus_and_a_family_model_reports_at_the_family_level(survey_folders, tmp_path):
    """The colonies are relabelled to the class map's families: the run's level is the semantic
    model's (the union of both models' classes mixes levels and was refused)."""
    keys = sorted(p.relative_to(survey_folders).as_posix() for p in survey_folders.rglob("*.jpg"))
    models = ChainModels(NoColonies(), semantic=HalfFamily(len(keys)), ensemble="weighted")
    process_folder(survey_folders, tmp_path / "out", models, "fp")
    record = json.loads((tmp_path / "out" / "photos" / f"{keys[0]}.json").read_text())
    assert (record["level"], record["classes"]) == ("main_family", ["Poritidae", "Acroporidae"])


def test_a_photo_replaced_under_its_name_is_redone_and_a_copied_archive_is_not(raw_photos, tmp_path):
    """Resume compares each photo with the one its record was made from (size and modification
    time, then the content's hash): a photo replaced under the same name is processed again and its
    record describes the new photo; a copied or touched archive (same bytes, new times) is skipped."""
    import os

    folder, truths, keys, telea = raw_photos

    def models(order):
        return ChainModels(TrueColonies(order), TrueCorners(order), TrueGrid(order), telea)

    out = tmp_path / "out"
    first = process_folder(folder, out, models(truths), "fp1")
    assert first["processed"] == len(keys)
    # the photo of keys[0] replaced by the bytes of keys[1] (a re-export, a corrected file)
    shutil.copy(folder / keys[1], folder / keys[0])
    again = process_folder(folder, out, models([truths[1]]), "fp1")
    assert (again["processed"], again["resumed_skipped"]) == (1, len(keys) - 1), again
    record = json.loads((out / "photos" / f"{keys[0]}.json").read_text())
    assert np.allclose(record["corners_xy"], truths[1]["corners_raw_xy"])
    # the same bytes with other times: a copy of the archive, a touched file
    copy = tmp_path / "copied"
    shutil.copytree(folder, copy)  # copytree keeps times; set new ones as a plain copy would
    for path in copy.rglob("*.jpg"):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    moved = process_folder(copy, out, models([]), "fp1")
    assert (moved["processed"], moved["resumed_skipped"]) == (0, len(keys)), moved


def test_a_write_that_fails_midway_leaves_no_record_of_the_earlier_run(raw_photos, monkeypatch, tmp_path):
    """A rerun with other options removes a photo's earlier outputs before writing its new ones; a
    failure in between must not leave the earlier record beside the outputs it no longer has (a run
    with the earlier options would take the photo as done, its warped quadrat gone)."""
    import pipeline.run

    folder, truths, keys, telea = raw_photos

    def models(order):
        return ChainModels(TrueColonies(order), TrueCorners(order), TrueGrid(order), telea)

    out = tmp_path / "out"
    process_folder(folder, out, models(truths), "fp1")
    write_image = pipeline.run._write_image

    def failing(path, image, rgb=True):
        if path.relative_to(out).as_posix().startswith(f"warped/{keys[0]}"):
            raise OSError("disk full")
        return write_image(path, image, rgb)

    monkeypatch.setattr(pipeline.run, "_write_image", failing)
    with pytest.raises(BatchFailedError):
        process_folder(folder, out, models(truths), "fp2")
    monkeypatch.setattr(pipeline.run, "_write_image", write_image)
    assert not (out / "photos" / f"{keys[0]}.json").exists()
    again = process_folder(folder, out, models(truths), "fp1")  # the earlier options again
    assert again["processed"] == len(keys), again  # the photo too: its record went with its outputs
    assert (out / "warped" / f"{keys[0]}.jpg").is_file()


def test_the_tables_leave_out_a_photo_another_run_redid_with_other_options(raw_photos, monkeypatch, tmp_path):
    """Two runs with other models or options on one OUT: a photo the other run rewrote after this
    run's pass is not reported as this run's (its cover is of other models); its status says why."""
    import pipeline.engine_local

    folder, truths, keys, telea = raw_photos
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    run_local = pipeline.engine_local.run_local

    def racing(items, job, chain_models, options):
        outcome = run_local(items, job, chain_models, options)
        record_path = job.record_path(keys[0])  # the other run's record arrives meanwhile
        record = json.loads(record_path.read_text())
        record["fingerprint"] = "other-options"
        record_path.write_text(json.dumps(record))
        return outcome

    monkeypatch.setattr(pipeline.engine_local, "run_local", racing)
    out = tmp_path / "out"
    process_folder(folder, out, models, "fp1")
    status = {r["photo"]: r for r in _status(out)}
    assert "another run" in status[keys[0]]["error"], status[keys[0]]
    assert not [r for r in csv.DictReader((out / "cover.csv").open()) if r["photo"] == keys[0]]
    assert keys[0] not in json.loads((out / "run.json").read_text())["photos"]
    assert all(not status[k]["error"] for k in keys[1:])
