"""grid_inpainting: masks, the SimpleLama path with a tiny scripted model, OpenCV, CLIs, Nuclio handler."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from nuclio_driver import call_handler
from tiny_models import tiny_lama_file

from grid_inpainting.deploy_as_zip import deploy_as_zip
from grid_inpainting.evaluate import load_pairs, width_coverage
from grid_inpainting.inpaint import LamaBackend, OpenCVBackend, remove_grid, select_backend
from grid_inpainting.masks import estimate_line_width, grid_mask, interpolate_missing
from grid_inpainting.metrics import psnr, ssim
from grid_inpainting.remove_grid import run_remove_grid
from quadratseg.errors import QuadratsegError
from quadratseg.formats.keypoints_io import coco_keypoints_document, yolo_pose_line
from quadratseg.keypoints import grid_template_xy
from quadratseg.settings import Settings
from quadratseg.synth import load_truth


@pytest.fixture(scope="module")
def tiny_lama(tmp_path_factory) -> Path:
    return tiny_lama_file(tmp_path_factory.mktemp("lama") / "big-lama.pt")


@pytest.fixture(scope="module")
def pairs(synthetic_set):
    return load_pairs(synthetic_set)


def test_default_mask_covers_the_true_strings(tmp_path):
    from quadratseg.synth import SynthConfig, generate_dataset

    big = generate_dataset(tmp_path / "s1024", SynthConfig(images=2, seed=5, size=1024), workers=1)
    coverage = width_coverage(load_pairs(big), [0.005, 0.009])
    assert coverage["0.009"]["string_coverage"] > 0.95  # the default width, measured at 1024 px
    assert coverage["0.009"]["mask_share"] < 0.3
    assert coverage["0.005"]["string_coverage"] < coverage["0.009"]["string_coverage"]


def test_missing_points_are_interpolated_or_skipped_never_drawn_to_the_origin():
    kp = grid_template_xy() * 400
    full = grid_mask(kp, (400, 400), line_width=5)
    holed = kp.copy()
    holed[[0, 1, 13, 60]] = np.nan
    interpolated = grid_mask(holed, (400, 400), line_width=5)
    assert (interpolated == full).mean() > 0.999
    assert np.allclose(interpolate_missing(holed), kp, atol=1e-6)
    skipped = grid_mask(holed, (400, 400), line_width=5, missing="skip")
    assert skipped.sum() < full.sum()
    assert not skipped[:5, :5].any() and not interpolated[:5, :5].any()  # nothing runs to (0, 0)


@pytest.mark.parametrize(
    "keypoints, message",
    [
        (np.zeros((100, 2)), "expected 117"),
        (np.zeros((117, 3)), "shape"),
        (grid_template_xy() * 4000, "outside the 400x400 image"),
    ],
)
def test_bad_keypoints(keypoints, message):
    with pytest.raises(QuadratsegError, match=message):
        grid_mask(keypoints, (400, 400))


def test_line_width_estimate_is_close_to_the_visible_width(synthetic_set, pairs):
    truths = load_truth(synthetic_set)
    assert len(pairs) >= 3 and len(truths) == len(pairs)
    for (_, gridded, _, kp), truth in zip(pairs[:3], truths[:3], strict=True):
        estimate = estimate_line_width(gridded, kp)
        assert 0.8 * truth["grid_line_width_px"] <= estimate <= 3.0 * truth["grid_line_width_px"] + 2


def test_simplelama_path_shapes_dtype_cropping_and_batches(tiny_lama):
    backend = LamaBackend(tiny_lama, device="cpu", batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (157, 203, 3), dtype=np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))  # another size: its own batch
    masks = [np.zeros(img.shape[:2], bool) for img in images]
    for m in masks:
        m[20:30, :] = True
    out = backend.inpaint_batch(images, masks)
    assert len(out) == 4
    for img, m, o in zip(images, masks, out, strict=True):
        assert o.shape == img.shape and o.dtype == np.uint8  # padded to 160x208 inside, cropped back
        assert np.abs(o[~m].astype(int) - img[~m].astype(int)).max() <= 1  # untouched outside the mask
        assert np.abs(o[m].astype(int) - img[m].astype(int)).mean() > 10  # filled inside
    single = backend.inpaint_batch(images[:1], masks[:1])[0]
    assert np.array_equal(single, out[0])  # batching does not change the result


def test_lama_backend_improves_the_masked_region(tiny_lama, pairs):
    backend = LamaBackend(tiny_lama, device="cpu")
    (_, gridded, truth, kp) = pairs[0]
    (result,) = remove_grid([gridded], [kp], backend)
    assert result.backend == "lama"
    assert psnr(result.image, truth, result.mask) > psnr(gridded, truth, result.mask) + 5


def test_opencv_backends_improve_psnr_and_ssim(pairs):
    for method in ("telea", "ns"):
        (_, gridded, truth, kp) = pairs[1]
        (result,) = remove_grid([gridded], [kp], OpenCVBackend(method))
        assert result.backend == f"opencv-{method}"
        assert psnr(result.image, truth, result.mask) > psnr(gridded, truth, result.mask) + 6
        assert ssim(result.image, truth) > ssim(gridded, truth)


def test_backend_selection_rules(tmp_path, tiny_lama, caplog):
    with pytest.raises(QuadratsegError, match="LAMA_MODEL"):
        select_backend("auto", Settings())
    assert select_backend("auto", Settings(allow_opencv_inpaint=True)).name == "opencv-telea"
    assert "falling back to OpenCV" in caplog.text
    assert select_backend("opencv-ns", Settings()).name == "opencv-ns"
    assert select_backend("auto", Settings(lama_model=tiny_lama)).name == "lama"
    with pytest.raises(QuadratsegError, match="do not exist"):
        select_backend("lama", Settings(lama_model=tmp_path / "missing.pt"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not torchscript")
    with pytest.raises(QuadratsegError, match="cannot be loaded"):
        select_backend("lama", Settings(lama_model=corrupt))
    with pytest.raises(QuadratsegError, match="--backend"):
        select_backend("magic", Settings())


def _write_images(pairs, folder: Path) -> list[tuple[str, tuple[int, int], np.ndarray]]:
    folder.mkdir(parents=True)
    items = []
    for name, gridded, _, kp in pairs[:2]:
        cv2.imwrite(str(folder / name), cv2.cvtColor(gridded, cv2.COLOR_RGB2BGR))
        items.append((name, (gridded.shape[1], gridded.shape[0]), kp))
    return items


def test_remove_grid_from_coco_and_yolo_inputs(tmp_path, pairs):
    items = _write_images(pairs, tmp_path / "images")
    coco = tmp_path / "kp.json"
    coco.write_text(json.dumps(coco_keypoints_document(items, "grid", [str(i) for i in range(1, 118)])))
    summary = run_remove_grid(
        str(tmp_path / "clean_coco"),
        images=str(tmp_path / "images"),
        coco=str(coco),
        backend="opencv-telea",
        settings=Settings(),
    )
    assert summary["images"] == 2 and summary["backend"] == "opencv-telea"
    manifest = json.loads((tmp_path / "clean_coco" / "grid_removal.json").read_text())
    assert {r["backend"] for r in manifest} == {"opencv-telea"}
    labels = tmp_path / "labels"
    labels.mkdir()
    assert len(items) == 2
    for name, size, kp in items:
        (labels / f"{Path(name).stem}.txt").write_text(yolo_pose_line(kp, size) + "\n")
    run_remove_grid(
        str(tmp_path / "clean_yolo"),
        images=str(tmp_path / "images"),
        yolo=str(labels),
        backend="opencv-telea",
        settings=Settings(),
    )
    a = cv2.imread(str(tmp_path / "clean_coco" / items[0][0]))
    b = cv2.imread(str(tmp_path / "clean_yolo" / items[0][0]))
    assert psnr(a, b) > 40  # same keypoints either way
    with pytest.raises(QuadratsegError, match="already exists"):
        run_remove_grid(
            str(tmp_path / "clean_yolo"),
            images=str(tmp_path / "images"),
            yolo=str(labels),
            backend="opencv-telea",
            settings=Settings(),
        )
    with pytest.raises(QuadratsegError, match="exactly one input"):
        run_remove_grid(str(tmp_path / "x"), images=str(tmp_path / "images"), settings=Settings())


def test_remove_grid_from_fiftyone_keeps_metadata_and_links_back(synthetic_set, tmp_path, dataset_name):
    import fiftyone as fo

    from data_engineering.create_fiftyone_dataset import run_pull

    run_pull(
        "g",
        "xml",
        str(synthetic_set / "cvat_exports" / "grid"),
        dataset_name=dataset_name,
        settings=Settings(media_dir=tmp_path / "media"),
    )
    clean_name = dataset_name + "-clean"
    try:
        summary = run_remove_grid(
            str(tmp_path / "clean"),
            dataset=dataset_name,
            backend="opencv-telea",
            new_dataset=clean_name,
            settings=Settings(),
        )
        clean = fo.load_dataset(clean_name)
        source = fo.load_dataset(dataset_name)
        assert clean.count() == source.count() == summary["images"] == len(load_truth(synthetic_set)) > 0
        sample = clean.first()
        original = source[sample.source_sample_id]
        assert sample.cvat_image_name == original.cvat_image_name and sample.tags == original.tags
        clean.reload()
        assert len(clean.skeletons["gt_grid"].labels) == 117 and clean.skeletons == source.skeletons
        assert (
            sample.inpaint_backend == "opencv-telea"
            and Path(sample.filepath).parent == (tmp_path / "clean").resolve()
        )
        from grid_inpainting.prepare_data import prepare_data

        written = prepare_data(dataset_name, str(tmp_path / "pairs"), layout="predict")
        assert json.loads(written)["pairs"] == source.count()
        masks = sorted((tmp_path / "pairs").glob("*_mask001.png"))
        assert len(masks) == source.count() == len(list((tmp_path / "pairs").glob("*.png"))) // 2
        mask = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
        assert set(np.unique(mask)) == {0, 255} and 0.05 < (mask > 0).mean() < 0.6
        # the fine-tune's layout: images and the pixels under the strings (twice the mask's width)
        assert json.loads(prepare_data(dataset_name, str(tmp_path / "train")))["images"] == source.count()
        unknown = sorted((tmp_path / "train" / "unknown").glob("*.png"))
        assert [p.name for p in unknown] == sorted(
            p.name for p in (tmp_path / "train" / "images").glob("*.png")
        )
        wide = cv2.imread(str(unknown[0]), cv2.IMREAD_GRAYSCALE) > 0
        assert wide.mean() > (mask > 0).mean() and (wide | (mask == 0)).all()
    finally:
        if fo.dataset_exists(clean_name):
            fo.delete_dataset(clean_name)


def test_nuclio_zip_and_handler(tmp_path, tiny_lama, pairs, shared_data):
    import yaml

    zip_path = Path(deploy_as_zip("pth-lama", str(tiny_lama), str(tmp_path / "out")))
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    assert {"nuclio/function.yaml", "nuclio/main.py", "nuclio/big-lama.pt"} <= names
    assert "nuclio/grid_inpainting/inpaint.py" in names and "nuclio/quadratseg/nuclio.py" in names
    ours = yaml.safe_load((tmp_path / "unzipped" / "nuclio" / "function.yaml").read_text())
    real = yaml.safe_load(
        (
            shared_data
            / "cvat"
            / "serverless"
            / "pytorch"
            / "mmpose"
            / "hrnet32"
            / "nuclio"
            / "function.yaml"
        ).read_text()
    )
    assert set(ours) == set(real) and ours["metadata"]["name"] == "pth-lama"
    # not a CVAT model: no CVAT type or label spec, so CVAT never lists it (docs/nuclio.md)
    assert set(ours["metadata"]["annotations"]) == {"name"} and "type" in real["metadata"]["annotations"]
    for key in ("runtime", "handler", "eventTimeout", "build", "triggers", "platform"):
        assert key in ours["spec"]
    assert ours["spec"]["handler"] == real["spec"]["handler"] == "main:handler"

    _, gridded, truth, kp = pairs[0]
    request = {
        "image": base64.b64encode(cv2.imencode(".png", cv2.cvtColor(gridded, cv2.COLOR_RGB2BGR))[1]).decode(),
        "keypoints": [None if np.isnan(p).any() else p for p in kp.tolist()],
    }
    nuclio_dir = tmp_path / "unzipped" / "nuclio"
    ok, bad = call_handler(
        nuclio_dir, [json.dumps(request), json.dumps({"image": "nope", "keypoints": []})], "grid_inpainting"
    )
    assert ok["status"] == 200 and bad["status"] == 400 and "base64" in bad["body"]["error"]
    response = ok["body"]
    assert response["image"]
    assert response["backend"] == "lama" and (response["width"], response["height"]) == (
        gridded.shape[1],
        gridded.shape[0],
    )
    from PIL import Image

    cleaned = np.asarray(Image.open(io.BytesIO(base64.b64decode(response["image"]))).convert("RGB"))
    assert cleaned.shape == gridded.shape
    assert psnr(cleaned, truth) > psnr(gridded, truth)


def test_deploy_needs_weights_unless_opencv_is_chosen(tmp_path):
    with pytest.raises(QuadratsegError, match="--weights"):
        deploy_as_zip("pth-lama", None, str(tmp_path / "a"))
    path = deploy_as_zip("pth-lama", None, str(tmp_path / "b"), backend="opencv-telea")
    with zipfile.ZipFile(path) as archive:
        assert "nuclio/big-lama.pt" not in archive.namelist()
        assert "opencv-telea" in archive.read("nuclio/function.yaml").decode()
