import json

import cv2
import numpy as np
import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_xml import read_cvat_xml
from quadratseg.geometry import polygon_to_mask
from quadratseg.keypoints import GRID_COLS, GRID_ROWS, grid_template_xy
from quadratseg.labelsets import coral_labels, corner_labels, grid_labels
from quadratseg.synth import SynthConfig, generate_dataset, load_truth
from quadratseg.synth.dataset import export_image_path, image_name
from quadratseg.warp import transform_points, warp_quadrat


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def psnr(a, b, mask=None):
    d = a.astype(float) - b.astype(float)
    d = d[mask] if mask is not None else d
    return 10 * np.log10(255**2 / np.mean(d**2))


def test_layout_and_exports(synthetic_set):
    truths = load_truth(synthetic_set)
    assert len(truths) == 6
    manifest = json.loads((synthetic_set / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and sum(manifest["subsets"].values()) == 6
    expected_labels = {"corners": corner_labels(), "grid": grid_labels(), "segmentation": coral_labels()}
    for folder, labels in expected_labels.items():
        doc = read_cvat_xml(synthetic_set / "cvat_exports" / folder / "annotations.xml")
        assert [lab.name for lab in doc.labels] == [lab.name for lab in labels]
        assert {t.subset for t in doc.tasks} == {"train", "val", "test"}
        assert [i.name for i in doc.images] == [t["name"] for t in truths]
        for image, truth in zip(doc.images, truths, strict=True):
            assert image.subset == truth["subset"]
            assert export_image_path(
                synthetic_set / "cvat_exports" / folder, image.subset, image.name
            ).is_file()
            if folder == "corners":
                (skeleton,) = image.shapes
                assert np.allclose(
                    [e.points[0] for e in skeleton.elements], truth["corners_raw_xy"], atol=0.01
                )
                assert (image.width, image.height) == tuple(truth["raw_size"])
            elif folder == "grid":
                (skeleton,) = image.shapes
                assert len(skeleton.elements) == 117 and not any(e.outside for e in skeleton.elements)
            else:
                assert [s.label for s in image.shapes] == [c["label"] for c in truth["corals"]]
                assert all(s.attributes["confidence"] == "100" for s in image.shapes)


def test_truth_is_geometrically_consistent(synthetic_set):
    exports = synthetic_set / "cvat_exports"
    for t in load_truth(synthetic_set):
        size = t["warped_size"][0]
        h = np.asarray(t["homography_warped_to_raw"])
        square = np.array([[0, 0], [size, 0], [size, size], [0, size]], float)
        assert np.allclose(transform_points(square, h), t["corners_raw_xy"], atol=1e-3)
        assert np.allclose(
            np.asarray(t["grid_warped_xy"]), grid_template_xy(GRID_ROWS, GRID_COLS) * size, atol=1e-3
        )
        assert np.allclose(transform_points(np.asarray(t["grid_warped_xy"]), h), t["grid_raw_xy"], atol=1e-2)
        raw = read_rgb(export_image_path(exports / "corners", t["subset"], t["name"]))
        warped = read_rgb(export_image_path(exports / "grid", t["subset"], t["name"]))
        rewarped, _ = warp_quadrat(raw, np.asarray(t["corners_raw_xy"]), (size, size))
        assert psnr(rewarped, warped) > 30


def test_clean_image_differs_from_warped_only_along_the_grid(synthetic_set):
    exports = synthetic_set / "cvat_exports"
    for t in load_truth(synthetic_set):
        size = t["warped_size"][0]
        warped = read_rgb(export_image_path(exports / "grid", t["subset"], t["name"]))
        clean = read_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"]))
        grid = np.asarray(t["grid_warped_xy"]).reshape(GRID_ROWS, GRID_COLS, 2)
        near_grid = np.zeros((size, size), bool)
        band = t["grid_line_width_px"] + 3
        for x in grid[0, :, 0]:
            near_grid[:, max(int(x - band), 0) : int(x + band) + 1] = True
        for y in grid[:, 0, 1]:
            near_grid[max(int(y - band), 0) : int(y + band) + 1, :] = True
        assert psnr(warped, clean, ~near_grid) > 34  # same pixels away from the strings (JPEG aside)
        assert psnr(warped, clean, near_grid) < 30  # the strings are visible


def test_polygons_lie_on_coral_pixels(synthetic_set):
    exports = synthetic_set / "cvat_exports"
    for t in load_truth(synthetic_set):
        clean = read_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"])).astype(float)
        size = tuple(t["warped_size"])
        coral = np.zeros(size[::-1], bool)
        for c in t["corals"]:
            mask = polygon_to_mask(np.asarray(c["polygon_xy"]), size)
            assert mask.sum() > 50
            coral |= mask
        # colonies are textured and shaded: local contrast is higher on them than on sand
        grey = clean.mean(axis=2)
        contrast = np.abs(grey - cv2.blur(grey, (5, 5)))
        assert contrast[coral].mean() > contrast[~coral].mean()


def test_same_seed_same_set_other_seed_other_set(tmp_path, synthetic_set):
    config = SynthConfig(images=2, seed=0, size=256, min_colonies=4, max_colonies=6)
    a = generate_dataset(tmp_path / "a", config, workers=1)
    b = generate_dataset(tmp_path / "b", config, workers=2)
    c = generate_dataset(
        tmp_path / "c", SynthConfig(images=2, seed=1, size=256, min_colonies=4, max_colonies=6)
    )
    assert load_truth(a) == load_truth(b)
    # an image does not depend on how many are made (only the subset split does)
    without_subset = [{k: v for k, v in t.items() if k != "subset"} for t in load_truth(synthetic_set)[:2]]
    assert [{k: v for k, v in t.items() if k != "subset"} for t in load_truth(a)] == without_subset
    assert load_truth(a) != load_truth(c)
    name = image_name(0)
    subset = load_truth(a)[0]["subset"]
    raw_a = export_image_path(a / "cvat_exports" / "corners", subset, name).read_bytes()
    assert raw_a == export_image_path(b / "cvat_exports" / "corners", subset, name).read_bytes()


def test_existing_folder_is_kept_and_failures_leave_nothing(tmp_path, monkeypatch):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(QuadratsegError, match="--overwrite"):
        generate_dataset(out, SynthConfig(images=1, size=256))
    assert (out / "keep.txt").read_text() == "mine"

    import quadratseg.synth.dataset as dataset

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset, "write_cvat_xml", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset(out, SynthConfig(images=1, size=256), overwrite=True, workers=1)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


@pytest.mark.parametrize(
    "config, message",
    [
        (SynthConfig(images=0), "--images"),
        (SynthConfig(size=64), "--size"),
        (SynthConfig(min_colonies=5, max_colonies=2), "min_colonies"),
    ],
)
def test_bad_parameters(tmp_path, config, message):
    with pytest.raises(QuadratsegError, match=message):
        generate_dataset(tmp_path / "x", config)
    assert not (tmp_path / "x").exists()


def test_rectangular_and_gridless_quadrats():
    """A 2:1 quadrat warps to a 2:1 image whose strings sit where the template puts them; a
    quadrat without a grid differs from its clean photo nowhere."""
    from quadratseg.synth.checks import projective_lattice, string_offsets_px
    from quadratseg.synth.scene import render_quadrat
    from quadratseg.warp import quadrat_homography

    q = render_quadrat(np.random.default_rng(3), (800, 600), 640, ["Acropora", "Porites"], aspect=2.0)
    assert q.warped.shape == (320, 640, 3) and q.warped_size == (640, 320)
    assert np.allclose(q.grid_warped_xy, grid_template_xy() * [640, 320])
    assert string_offsets_px(q.warped, q.warped_clean, GRID_ROWS, GRID_COLS).max() < 0.9
    # the photo's quadrat is twice as wide as high (lattice by line geometry, no homography)
    points, uv = projective_lattice(q.corners_raw_xy)
    warped = transform_points(points, quadrat_homography(q.corners_raw_xy, (640, 320)))
    assert np.abs(warped - uv * [640, 320]).max() < 1e-3  # float32 in OpenCV
    assert all(c.polygon_xy[:, 1].max() < 320 for c in q.colonies)
    bare = render_quadrat(np.random.default_rng(3), (800, 600), 640, ["Acropora"], grid=False)
    assert np.array_equal(bare.warped, bare.warped_clean)
    with pytest.raises(QuadratsegError, match="aspect"):
        SynthConfig(aspect=9).validate()


def test_the_held_out_share_sets_the_validation_and_test_photos_from_the_command_line(tmp_path):
    """``--holdout-share`` gives val and test each that share of the photos (the demo holds out a
    third so that its interval calibration and its scores rest on 12 photos each); the images are
    those of the default split, only their subsets move."""
    import subprocess
    import sys
    from collections import Counter

    out = tmp_path / "third"
    args = [sys.executable, "-m", "quadratseg.synth", str(out), "--images", "9", "--size", "160"]
    subprocess.run([*args, "--holdout-share", "0.3333", "--workers", "1"], check=True, capture_output=True)
    truths = load_truth(out)
    assert Counter(t["subset"] for t in truths) == {"train": 3, "val": 3, "test": 3}
    assert json.loads((out / "manifest.json").read_text())["config"]["holdout_share"] == 0.3333
    for t in truths:
        assert export_image_path(out / "cvat_exports" / "corners", t["subset"], t["name"]).is_file()
    bad = subprocess.run([*args, "--holdout-share", "0.5"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--holdout-share" in bad.stderr
    with pytest.raises(QuadratsegError, match="--holdout-share"):
        SynthConfig(holdout_share=0.0).validate()
