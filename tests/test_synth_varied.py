"""The varied synthetic world: presets, exact truth (corners, grid or none, string masks, colonies
with holes), reproducibility, EXIF, and the simple world kept byte for byte."""

import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from quadratseg.cover import label_map
from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_xml import read_cvat_xml
from quadratseg.geometry import PolygonWithHoles, cvat_rle_to_mask, polygons_to_mask
from quadratseg.images import read_image_rgb
from quadratseg.synth import SynthConfig, generate_dataset, load_truth
from quadratseg.synth import varied as varied_module
from quadratseg.synth.dataset import GENERATOR_VERSION, coral_rings, export_image_path, write_raw_photo
from quadratseg.synth.reef import Colony, PlaneMap
from quadratseg.synth.scene import render_quadrat
from quadratseg.synth.varied import (
    FRAMES,
    Shot,
    draw_frame_style,
    draw_tube_frame,
    render_varied,
    tube_legs,
)
from quadratseg.warp import transform_points, warp_image

# sha256 of the simple world's images and truth (3 quadrats, seed 0, 256 px, 4..6 colonies) as
# generator version 1 wrote them: the rest of the suite keeps its figures while these hold.
SIMPLE_IMAGES_SHA = "6fb1b2784ca0fd812bd441c156064a65f89f3239aaf06ca18e5b15d85c9ef908"
SIMPLE_TRUTH_SHA = "ae9829790e1c1036933375fc7470a2e87e3f80a6c3676e6b2132f47937bca9aa"


@pytest.fixture(scope="module")
def varied_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied") / "set"
    config = SynthConfig(
        images=8, seed=6, size=256, min_colonies=5, max_colonies=9, world="varied"
    )  # EXIF 3 and 6
    return generate_dataset(out, config, workers=1)


def test_simple_world_is_byte_identical_to_version_1(tmp_path):
    config = SynthConfig(images=3, seed=0, size=256, min_colonies=4, max_colonies=6)
    out = generate_dataset(tmp_path / "s", config, workers=1)
    h = hashlib.sha256()
    for p in sorted(out.rglob("*.jpg")):
        h.update(p.relative_to(out).as_posix().encode())
        h.update(p.read_bytes())
    assert h.hexdigest() == SIMPLE_IMAGES_SHA
    truth = json.loads((out / "truth.json").read_text())["images"]
    assert hashlib.sha256(json.dumps(truth, sort_keys=True).encode()).hexdigest() == SIMPLE_TRUTH_SHA
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["world"] == "simple" and manifest["version"] == GENERATOR_VERSION
    assert not (out / "masks").exists()


def test_world_preset_from_the_command_line(tmp_path):
    out = tmp_path / "cli"
    args = [sys.executable, "-m", "quadratseg.synth", str(out), "--images", "2", "--size", "192"]
    subprocess.run([*args, "--world", "varied", "--workers", "1"], check=True, capture_output=True)
    assert json.loads((out / "manifest.json").read_text())["config"]["world"] == "varied"
    assert all(t["world"] == "varied" for t in load_truth(out))
    bad = subprocess.run([*args, "--world", "lagoon"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--world" in bad.stderr and not (tmp_path / "x").exists()
    with pytest.raises(QuadratsegError, match="--world"):
        SynthConfig(world="lagoon").validate()


def test_every_frame_and_string_option_is_reachable():
    seen = {(f.style, f.strings) for f in (draw_frame_style(Shot(i, 0, 0, 0)) for i in range(300))}
    assert {style for style, _ in seen} == set(FRAMES)
    assert {strings for _, strings in seen} == {"grid", "diagonals", "none"}
    for frame in FRAMES:  # a caller can fix the frame and strings
        fixed = draw_frame_style(Shot(1, 0, 0, 0, frame=frame, strings="none"))
        assert (fixed.style, fixed.strings) == (frame, "none")


def _inner_edge_contrast(raw, corners, size, band):
    """Mean grey just outside minus just inside the quadrat's edges (warped frame, ``band`` px)."""
    m = 2 * band
    hom = np.linalg.inv(_homography(corners, size, m))
    big = warp_image(raw.astype(np.float32).mean(axis=2), hom, (size + 2 * m, size + 2 * m))
    outside = np.concatenate(
        [big[m - band : m, m : m + size].ravel(), big[m + size : m + size + band, m : m + size].ravel()]
    )
    inside = np.concatenate(
        [big[m : m + band, m : m + size].ravel(), big[m + size - band : m + size, m : m + size].ravel()]
    )
    return float(outside.mean() - inside.mean())


def _homography(corners, size, margin):
    from quadratseg.warp import quadrat_homography

    h_raw_to_warped = quadrat_homography(np.asarray(corners, float), (size, size))
    shift = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1]], float)
    return np.linalg.inv(shift @ h_raw_to_warped)  # big warped -> raw


def test_corner_truth_is_the_frame_inner_corner():
    """The light metal frame lies just outside the true quadrat edges, the reef just inside; corners
    moved inward by a bar width (a stand-in truth) see no such step."""
    size = 384
    for seed in range(3):
        shot = Shot(seed, seed, seed, 10**6, frame="criobe", strings="none")
        q = render_quadrat(
            np.random.default_rng(seed), (512, 384), size, ["Porites"], world="varied", shot=shot
        )
        band = max(2, round(draw_frame_style(shot).bar * size * 0.6))
        assert _inner_edge_contrast(q.raw, q.corners_raw_xy, size, band) > 25
        h = q.homography_warped_to_raw
        inward = transform_points(
            np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * 2 * band
            + [[0, 0], [size, 0], [size, size], [0, size]],
            h,
        )
        assert _inner_edge_contrast(q.raw, inward, size, band) < 25
        square = np.array([[0, 0], [size, 0], [size, size], [0, size]], float)
        assert np.allclose(transform_points(square, h), q.corners_raw_xy, atol=1e-6)


def test_grid_truth_at_string_crossings_and_string_masks_where_strings_are():
    size = 384
    for seed in range(2):
        shot = Shot(seed, seed + 1, seed + 2, 10**6, frame="pvc", strings="grid")
        q = render_quadrat(
            np.random.default_rng(seed), (512, 384), size, ["Acropora"], world="varied", shot=shot
        )
        assert q.grid_warped_xy.shape == (117, 2) and q.string_mask_warped.any()
        ij = np.round(q.grid_warped_xy - 0.5).astype(int)
        assert q.string_mask_warped[ij[:, 1], ij[:, 0]].all()  # every point on a string crossing
        assert np.allclose(transform_points(q.grid_warped_xy, q.homography_warped_to_raw), q.grid_raw_xy)
        diff = np.abs(q.warped.astype(float) - q.warped_clean.astype(float)).sum(axis=2)
        # beside the strings: their shadows (up to 0.8 % of the side away) and the lens blur
        near = cv2.dilate(q.string_mask_warped.astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool)
        assert diff[q.string_mask_warped].mean() > 30  # the strings are visible where the mask says
        assert diff[~near].mean() < 0.5  # and nowhere else
    for strings in ("diagonals", "none"):
        shot = Shot(5, 5, 5, 5, frame="black_tape", strings=strings)
        q = render_quadrat(np.random.default_rng(5), (512, 384), size, ["Porites"], world="varied", shot=shot)
        assert q.grid_warped_xy is None and q.grid_raw_xy is None
        assert q.string_mask_warped.any() == (strings == "diagonals")


def test_truth_json_and_cvat_exports_carry_no_grid_holes_and_exif(varied_set):
    truths = load_truth(varied_set)
    exports = varied_set / "cvat_exports"
    grid_doc = read_cvat_xml(exports / "grid" / "annotations.xml")
    seg_doc = read_cvat_xml(exports / "segmentation" / "annotations.xml")
    for t, gimage, simage in zip(truths, grid_doc.images, seg_doc.images, strict=True):
        assert t["world"] == "varied"
        assert (t["grid_warped_xy"] is None) == (t["strings"] != "grid") == (not gimage.shapes)
        size = tuple(t["warped_size"])
        for coral, shape in zip(t["corals"], simage.shapes, strict=True):
            truth_mask = polygons_to_mask(
                [PolygonWithHoles(coral_rings(coral)[0], coral_rings(coral)[1:])], size
            )
            if coral["holes_xy"]:
                assert shape.type == "mask"
                assert np.array_equal(cvat_rle_to_mask(shape.rle, size), truth_mask)
            else:
                assert shape.type == "polygon"
        strings = cv2.imread(str(varied_set / t["string_mask"]), cv2.IMREAD_UNCHANGED)
        assert strings.shape == size[::-1] and (strings.any() == (t["strings"] != "none"))
        occluders = cv2.imread(str(varied_set / t["occluder_mask"]), cv2.IMREAD_UNCHANGED)
        assert occluders.shape == tuple(t["raw_size"])[::-1]
        raw = read_image_rgb(export_image_path(exports / "corners", t["subset"], t["name"]))
        assert raw.shape[:2] == tuple(t["raw_size"])[::-1]  # displayed orientation, as the truth
        assert 0.0 <= t["cover"] <= 0.95
    assert any(c["holes_xy"] for t in truths for c in t["corals"])


def test_class_maps_from_polygons_with_holes():
    """A small colony on a big one: the big one's truth has a hole, and a class map drawn from the
    rings (outline and holes) counts the painted pixels; a reader ignoring holes (a stand-in) does not."""
    big = Colony("Porites", _circle((96, 96), 60), seed=1, form="massive")
    small = Colony("Pocillopora", _circle((96, 96), 20), seed=2, form="branching")
    dead = Colony(
        "Acropora", _circle((40, 160), 18), holes_xy=[_circle((40, 160), 8)], seed=3, form="plating"
    )
    q = render_quadrat(
        np.random.default_rng(0), (256, 192), 192, [], colonies=[big, small, dead], world="varied", shot=4
    )
    by_label = {c.label: c for c in q.colonies}
    assert len(by_label["Porites"].holes_xy) == 1 and len(by_label["Acropora"].holes_xy) == 1
    rings = [(c.label, [c.polygon_xy, *c.holes_xy]) for c in q.colonies]
    index, names = label_map(rings, (192, 192))
    area = {n: int((index == k + 1).sum()) for k, n in enumerate(names)}
    assert abs(area["Pocillopora"] - np.pi * 20**2) < 0.03 * np.pi * 20**2
    assert abs(area["Porites"] - np.pi * (60**2 - 20**2)) < 0.03 * np.pi * 60**2
    assert abs(area["Acropora"] - np.pi * (18**2 - 8**2)) < 0.05 * np.pi * 18**2
    assert abs(q.shot_info["cover"] - (index > 0).mean()) < 1e-4  # rounded to 4 places
    # a reader that takes the outline alone (a CVAT polygon has no holes) counts the hole as coral
    outline_only = polygons_to_mask([by_label["Porites"].polygon_xy], (192, 192)).sum()
    assert outline_only - area["Porites"] > 0.9 * np.pi * 20**2


def _circle(centre, r, n=64):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)], axis=1)


def test_painted_reef_matches_its_truth():
    """Painted coral pixels (the photo before light and occluders) are the truth's class map: paint
    the same reef with a flat colour per colony and compare pixel for pixel."""
    from quadratseg.synth import reef as reef_mod

    rng = np.random.default_rng(7)
    colonies = reef_mod.place_varied_colonies(
        rng, (160, 160), ["Porites", "Acropora", "Fungia", "Montipora"] * 3
    )
    parts = reef_mod.visible_parts(colonies, (160, 160))
    plane = np.zeros((200, 200, 3), np.float32)
    to_plane = reef_mod.PlaneMap((1.0, 1.0), (20, 20), (160, 160))
    painted = np.zeros((200, 200), np.int32)

    def flat(plane_, mask, box_xy, c, _to_plane):
        x0, y0 = box_xy
        painted[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]][mask] = (
            next(k for k, x in enumerate(colonies) if x is c) + 1
        )

    original = reef_mod._paint
    reef_mod._paint = flat
    try:
        reef_mod.paint_reef(plane, to_plane, colonies, parts, [])
    finally:
        reef_mod._paint = original
    truth = np.zeros((160, 160), np.int32)
    for p in parts:
        truth[polygons_to_mask([p.polygon], (160, 160))] = p.colony + 1
    inner = painted[20:180, 20:180]
    assert (inner != truth).mean() < 0.002  # pixel centres on a shared edge aside


def test_seeds_reproduce_and_a_new_shot_rephotographs_the_same_reef(tmp_path):
    kwargs = {"raw_size": (320, 240), "size_wh": (256, 256), "genera": ["Porites", "Acropora", "Pocillopora"]}
    a = render_varied(np.random.default_rng([9, 1]), **kwargs)
    b = render_varied(np.random.default_rng([9, 1]), **kwargs)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.corners_raw_xy, b.corners_raw_xy)
    c = render_varied(np.random.default_rng([9, 1]), **kwargs, shot=Shot(1, 2, 3, 4, frame="metal"))
    assert not np.allclose(a.corners_raw_xy, c.corners_raw_xy)
    assert [p.label for p in a.parts] == [p.label for p in c.parts]
    assert all(
        np.array_equal(p.polygon.exterior, r.polygon.exterior) for p, r in zip(a.parts, c.parts, strict=True)
    )
    config = SynthConfig(images=2, seed=4, size=192, world="varied")
    one = generate_dataset(tmp_path / "one", config, workers=1)
    two = generate_dataset(tmp_path / "two", config, workers=2)
    assert load_truth(one) == load_truth(two)
    name, subset = load_truth(one)[0]["name"], load_truth(one)[0]["subset"]
    assert (
        export_image_path(one / "cvat_exports" / "corners", subset, name).read_bytes()
        == export_image_path(two / "cvat_exports" / "corners", subset, name).read_bytes()
    )


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_stored_turned_read_upright(tmp_path, orientation):
    from PIL import Image

    q = render_quadrat(
        np.random.default_rng(2),
        (320, 240),
        192,
        ["Porites"],
        world="varied",
        shot=Shot(2, 7, 2, 2, exif_orientation=orientation),  # a camera seed drawing a 4:3 photo
    )
    assert q.exif_orientation == orientation and q.raw.shape[:2] == (240, 320)
    path = tmp_path / "turned.jpg"
    write_raw_photo(path, q.raw, 95, q.exif_orientation)
    with Image.open(path) as stored:
        assert stored.size == ((240, 320) if orientation in (6, 8) else (320, 240))
    upright = read_image_rgb(path)
    assert upright.shape == q.raw.shape
    assert np.abs(upright.astype(float) - q.raw.astype(float)).mean() < 4  # JPEG aside


# The 9 real photos of ../shared/data (7 CoralSCoP metal-frame quadrats, 2 MCR LTER CoralNet
# quadrats) measured with quadratseg.synth.stats (benchmarks/measure_real_photos.py): mean, std.
REAL_STATS = {
    "L_mean": (44.168, 13.479),
    "L_std": (19.235, 3.660),
    "L_p5": (15.033, 16.463),
    "L_p95": (78.344, 9.326),
    "a_mean": (-4.279, 3.397),
    "b_mean": (-0.912, 6.259),
    "saturation": (0.413, 0.113),
    "cast_gb_r": (1.279, 0.254),
    "spectrum_slope": (-2.153, 0.205),
    "edge_density": (0.151, 0.055),
}


def _world_distance(world):
    from quadratseg.synth.dataset import genera_for_image
    from quadratseg.synth.stats import distance, photo_stats, summarize

    photos = [
        render_quadrat(
            np.random.default_rng([0, i]), (512, 384), 384, genera_for_image(i, 0, 10), world=world
        ).raw
        for i in range(6)
    ]
    unit = {k: max(std, 0.1 * abs(mean)) for k, (mean, std) in REAL_STATS.items()}
    return distance(summarize(photo_stats(p) for p in photos), REAL_STATS, unit)


@pytest.mark.slow
def test_varied_world_statistics_are_near_the_real_photos():
    """Six small varied photos: every figure's mean within 1.25 real standard deviations of the
    real photos' mean (measured 0.04..0.99, the spectrum slope farthest); the simple world, a stand-in,
    is not (L_std, a*, edges)."""
    varied = _world_distance("varied")
    assert max(varied.values()) < 1.25, varied
    assert np.mean(list(varied.values())) < 0.7, varied
    simple = _world_distance("simple")
    assert max(simple.values()) > 2.0, simple


@pytest.mark.slow
def test_consumers_read_the_varied_exports(varied_set, tmp_path):
    """data_engineering's pull reads colonies with holes (CVAT masks) back as rings that rasterize to
    the truth, images of frames without a grid carry no grid, and grid_pose_detection's layout skips
    them with the reason and writes the others' points; EXIF-turned photos are sized as displayed."""
    import uuid

    import fiftyone as fo

    from data_engineering.create_fiftyone_dataset import run_pull
    from grid_pose_detection.prepare_data import write_pose_layout
    from grid_pose_detection.tasks import get_task
    from quadratseg.settings import Settings

    truths = {t["name"]: t for t in load_truth(varied_set)}
    names = {}
    try:
        for folder in ("segmentation", "grid", "corners"):
            names[folder] = f"varied-{folder}-{uuid.uuid4().hex[:6]}"
            run_pull(
                names[folder],
                "xml",
                str(varied_set / "cvat_exports" / folder),
                dataset_name=names[folder],
                settings=Settings(media_dir=tmp_path / "media"),
            )
        holed = 0
        for sample in fo.load_dataset(names["segmentation"]):
            truth = truths[sample.cvat_image_name]
            size = tuple(truth["warped_size"])
            polys = sample.gt_polylines.polylines
            assert [p.label for p in polys] == [c["label"] for c in truth["corals"]]
            for poly, coral in zip(polys, truth["corals"], strict=True):
                rings = [np.asarray(r) * size for r in poly.points]
                holed += len(rings) > 1
                got = polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], size)
                want = polygons_to_mask(
                    [PolygonWithHoles(coral_rings(coral)[0], coral_rings(coral)[1:])], size
                )
                assert (got != want).sum() <= 0.01 * want.sum() + 4
        assert holed > 0  # colonies with holes arrive with them (tiny ones may drop: the mask says)
        grid_samples = fo.load_dataset(names["grid"])
        with_grid = [s for s in grid_samples if truths[s.cvat_image_name]["grid_warped_xy"] is not None]
        assert 0 < len(with_grid) < len(grid_samples)
        assert all(s.gt_grid is None for s in grid_samples if s not in with_grid)
        grid_samples.compute_metadata()
        summary = write_pose_layout(get_task("gridpose"), grid_samples, tmp_path / "pose", layout="points")
        assert summary["skipped"] == len(grid_samples) - len(with_grid)
        assert any(t["exif_orientation"] in (6, 8) for t in truths.values())
        corners = fo.load_dataset(names["corners"])
        corners.compute_metadata()
        for sample in corners:
            assert [sample.metadata.width, sample.metadata.height] == truths[sample.cvat_image_name][
                "raw_size"
            ]
    finally:
        for name in names.values():
            if fo.dataset_exists(name):
                fo.delete_dataset(name)


def test_matching_selfcheck_leaves_out_frames_without_a_grid(varied_set):
    from quadratseg.synth.checks import matching_selfcheck

    truths = load_truth(varied_set)
    assert any(t["grid_warped_xy"] is None for t in truths)
    assert matching_selfcheck(truths, 0) == 1.0  # the sagging grids still match their template


def test_every_growth_form_exif_orientation_and_occluder_is_reachable():
    from quadratseg.synth.reef import GENUS_FORMS, GROWTH_FORMS, colony_form
    from quadratseg.synth.varied import OCCLUDER_CODES, draw_exif_orientation, draw_occluders

    assert {colony_form(label, seed) for label in GENUS_FORMS for seed in range(40)} == set(GROWTH_FORMS)
    orientations = {draw_exif_orientation(Shot(0, i, 0, 0)) for i in range(200)}
    assert orientations == {1, 3, 6, 8}
    codes = set()
    for i in range(60):
        codes |= set(np.unique(draw_occluders(Shot(0, 0, 0, i), (96, 72))[2]).tolist())
    assert codes >= {0, OCCLUDER_CODES["fish"], OCCLUDER_CODES["fin"], OCCLUDER_CODES["shadow"]}
    q = render_quadrat(
        np.random.default_rng(1), (256, 192), 160, ["Porites"], world="varied", shot=Shot(0, 0, 0, 1)
    )
    assert q.occluder_codes_raw.shape == (192, 256)


def test_yolo_export_keeps_the_holes_of_the_truth(varied_set):
    """coral_seg_yolo joins a colony's rings into one YOLO outline; ultralytics' own rasterizer
    (polygon2mask, the oracle) gives back the truth's pixels with the holes open, where the outline
    alone (a stand-in that drops the holes) does not."""
    from ultralytics.data.utils import polygon2mask

    from coral_seg_yolo.prepare_data import colony_segment

    holed = [(t, c) for t in load_truth(varied_set) for c in t["corals"] if c["holes_xy"]]
    assert holed
    stand_in_fails = 0
    for t, coral in holed:
        w, h = t["warped_size"]
        rings = coral_rings(coral)
        truth = polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], (w, h))
        yolo = polygon2mask((h, w), [colony_segment(rings).ravel()]).astype(bool)
        outline = polygon2mask((h, w), [rings[0].ravel()]).astype(bool)
        iou = (yolo & truth).sum() / (yolo | truth).sum()
        hole_px = int(outline.sum() - truth.sum())
        assert iou > 0.9, (t["name"], coral["label"], iou)
        assert abs(int(yolo.sum()) - int(truth.sum())) < 0.5 * hole_px + 0.05 * truth.sum()
        stand_in_fails += hole_px >= 0.5 * hole_px + 0.05 * truth.sum()
    assert stand_in_fails > 0


# ------------------------------------------------------------------ the tube frame, photo shape, no frame


def _side_profiles(raw, corners, size=400, margin=60, inward=False):
    """Median RGB (4 sides, distance bins, 3) outward from the inner edge (``inward``: into the
    quadrat), per 2 px of a ``size`` px interior (the quadrat warped square with ``margin`` px of
    frame around it)."""
    from quadratseg.warp import quadrat_homography

    h = quadrat_homography(np.asarray(corners, float), (size, size))
    shift = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1]], float)
    big = warp_image(np.asarray(raw, np.float32), shift @ h, (size + 2 * margin, size + 2 * margin))
    span = slice(margin + 40, margin + size - 40)
    out = []
    for side in "TRBL":
        rows = []
        for k in range(0, 24, 2):
            d = -1 - k if inward else k  # row k outward is row -1 - k inward
            px = {
                "T": big[margin - 1 - d, span],
                "B": big[margin + size + d, span],
                "L": big[span, margin - 1 - d],
                "R": big[span, margin + size + d],
            }[side]
            rows.append(np.median(px, axis=0))
        out.append(rows)
    return np.asarray(out)


def _frame_look(raw, corners):
    """What the real tube frames show (see test below): the strip's darkness against the tube's
    brightness and against the reef just inside, blue tape on the top bar."""
    prof = _side_profiles(raw, corners)
    grey = prof.mean(axis=2)  # (4, 12)
    strip, tube = grey[:, :4].mean(axis=1), grey[:, 5:9].max(axis=1)
    reef = _side_profiles(raw, corners, inward=True).mean(axis=2)[:, 2:8].mean(axis=1)  # 4..16 px in
    hsv = cv2.cvtColor(np.clip(prof, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    return {
        "tube_over_strip": float(np.median(tube - strip)),
        "strip_over_reef": float(np.median(strip - reef)),
        "blue_top": float((hsv[0, 6:, 0] > 100).mean() * (hsv[0, 6:, 1] > 120).mean()),
    }


@pytest.fixture(scope="module")
def real_tube_looks(shared_data):
    from grid_pose_detection.evaluate_real import load_hand_corners

    folder = shared_data / "real_quadrats" / "coralscop"
    return [
        _frame_look(read_image_rgb(folder / name), corners)
        for name, corners in sorted(load_hand_corners(folder).items())
    ]


def test_the_tube_frame_looks_like_the_real_coralscop_frames(real_tube_looks):
    """Across the bars of the 7 real photos (hand corners): a graduated strip on the inner side,
    darker than the bright silver tube beyond it (tube - strip, median over sides: 61..94 grey
    levels, median 68), and blue tape on the top bar; the strip about as dark as the reef inside it
    (3.4..12.3 grey levels apart): the inner edge is a change of texture, not of brightness. The
    varied world's tube frame shows all three (photographed through the water, camera and light of 6
    shots; measured: gap median 64, blue on 5 of 6 top bars, strip to reef 4.5..21, median 17; before
    generator version 5, 4..56, median 46); its older thin metal bar, a stand-in, is brighter inside
    than out (gap -42..-21)."""
    real_gap = [look["tube_over_strip"] for look in real_tube_looks]
    assert min(real_gap) > 30 and all(look["blue_top"] > 0 for look in real_tube_looks), real_tube_looks
    looks = {}
    for frame in ("tube", "metal"):
        looks[frame] = []
        for seed in range(6):
            shot = Shot(seed, seed, seed, 10**6 + seed, frame=frame, strings="none", exif_orientation=1)
            q = render_quadrat(
                np.random.default_rng(seed), (512, 512), 384, ["Porites"], world="varied", shot=shot
            )
            looks[frame].append(_frame_look(q.raw, q.corners_raw_xy))
    gap = [look["tube_over_strip"] for look in looks["tube"]]
    assert np.median(gap) > 0.7 * np.median(real_gap), (gap, real_gap)
    # the strip is about as dark as the reef inside it: the frame's inner edge is a change of texture
    real_step = [abs(look["strip_over_reef"]) for look in real_tube_looks]
    step = [abs(look["strip_over_reef"]) for look in looks["tube"]]
    assert max(real_step) < 25, real_tube_looks
    assert np.median(step) < 25 and np.mean(np.array(step) < 25) >= 0.5, (step, real_step)
    assert np.mean([look["blue_top"] > 0 for look in looks["tube"]]) >= 0.5, looks["tube"]
    assert np.median([look["tube_over_strip"] for look in looks["metal"]]) < 0.5 * np.median(real_gap)


def test_the_tube_frames_legs_plug_into_its_corners_as_on_the_real_rig(monkeypatch):
    """On the 7 real CoralSCoP photos each leg plugs into the joint at the quadrat's inner corner:
    its axis through the hand corner, its cut end 0..10 px outward of it along the axis, 27..30 px
    across on a 735 px side (3.7..4.1 %; the black connector about 45), at 37..60 degrees from the
    bars; the TL joint under a black connector sleeve (measured on photo 5 at 3x, docs/synthetic.md).
    The varied world's legs are drawn so, and painted over the bars where they are drawn; before
    generator version 6 they started beyond the bars' outer corner, under them (about 2 bar widths
    out on the diagonal), leaving the joint open."""
    side, offset = 400, 100
    to_plane = PlaneMap((1.0, 1.0), (offset, offset), (side, side))
    corners = np.array(
        [[offset, offset], [offset + side, offset], [offset + side] * 2, [offset, offset + side]]
    )
    outward = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    black_tl = []
    for seed in range(40):
        frame = draw_frame_style(Shot(seed, 0, 0, 0, frame="tube"))
        legs = tube_legs(frame, to_plane)
        plane = np.full((side + 2 * offset, side + 2 * offset, 3), 90.0, np.float32)
        mask = draw_tube_frame(plane, to_plane, frame)
        for leg, corner, d in zip(legs, corners, outward, strict=True):
            tip, end = np.array(leg.tip_xy), np.array(leg.end_xy)
            axis = (end - tip) / np.linalg.norm(end - tip)
            along = float((tip - corner) @ axis)  # the cut end's distance outward of the corner
            off_axis = abs(float((corner - tip) @ np.array([-axis[1], axis[0]])))
            assert np.all(np.sign(axis) == d), (seed, axis, d)
            assert 30 <= np.degrees(np.arctan2(abs(axis[1]), abs(axis[0]))) <= 62
            assert 0.033 * side <= leg.thick <= 0.05 * side
            assert -0.1 * leg.thick <= along <= 0.4 * leg.thick and off_axis <= 0.15 * leg.thick
            for t in (0.3, 1.0, 2.0):  # painted where drawn, over the bars' corner
                x, y = np.rint(tip + axis * leg.thick * t).astype(int)
                assert mask[y, x], (seed, t)
        black_tl.append(legs[0].black is not None)
        # over the bars: the same frame drawn without its legs differs at the leg's end, inside the
        # bars' corner square (the bars' pixels there are hidden by the leg, not the other way round)
        with monkeypatch.context() as m:
            m.setattr(varied_module, "paint_tube_leg", lambda *_: None)
            bare = np.full_like(plane, 90.0)
            draw_tube_frame(bare, to_plane, frame)
        for leg in legs:
            tip, end = np.array(leg.tip_xy), np.array(leg.end_xy)
            x, y = np.rint(tip + (end - tip) / np.linalg.norm(end - tip) * leg.thick * 0.3).astype(int)
            assert np.abs(plane[y, x] - bare[y, x]).max() > 1, (seed, leg)
    assert 0.5 <= np.mean(black_tl) <= 0.9


def test_tube_shots_are_square_and_filled_like_the_real_photos():
    """The real CoralSCoP photos are square, the quadrat's mean inner side 0.71 of the photo's side
    (a camera fixed to the frame); most tube-frame shots are drawn so, other frames keep the set's
    photo shape in most shots."""
    from quadratseg.synth.stats import quadrat_fill

    fills, square = [], []
    for seed in range(24):
        shot = Shot(seed, seed, seed, 10**6, frame="tube", strings="none", exif_orientation=1)
        r = render_varied(np.random.default_rng(seed), (256, 192), (160, 160), [], shot=shot)
        fills.append(quadrat_fill(r.corners_raw_xy, r.raw.shape[1::-1]))
        square.append(r.raw.shape[0] == r.raw.shape[1])
        assert r.occluder_codes_raw.shape == r.raw.shape[:2]
    assert np.mean(square) >= 0.6 and 0.64 < np.median(fills) < 0.78, (square, fills)
    other = [
        render_varied(
            np.random.default_rng(s), (256, 192), (160, 160), [], shot=Shot(s, s, s, 0, frame="pvc")
        )
        for s in range(8)
    ]
    assert np.mean([o.raw.shape[:2] == (192, 256) for o in other]) >= 0.5


def test_a_photo_without_a_frame_on_request_only():
    """``no_frame_share`` (0 by default): that share of the shots shows reef alone, no frame, no
    strings; the truth says ``frame`` "none" and keeps the quadrat's corners (where it would be).
    The same shot with the share at 0 has its frame, whose pixels differ along the edges."""
    shot = Shot(3, 3, 3, 10**6, exif_orientation=1)
    with_frame = render_quadrat(
        np.random.default_rng(3), (320, 240), 192, ["Porites"], world="varied", shot=shot
    )
    assert with_frame.shot_info["frame"] in FRAMES
    bare = render_quadrat(
        np.random.default_rng(3), (320, 240), 192, ["Porites"], world="varied", shot=shot, no_frame_share=1.0
    )
    assert bare.shot_info["frame"] == "none" and bare.shot_info["strings"] == "none"
    assert bare.grid_warped_xy is None and not bare.string_mask_warped.any()
    assert np.allclose(bare.corners_raw_xy, with_frame.corners_raw_xy)
    assert not (bare.occluder_codes_raw == 5).any()  # nothing of a frame bulges over the interior
    fixed = draw_frame_style(Shot(1, 0, 0, 0, frame="none"))
    assert (fixed.style, fixed.strings) == ("none", "none")
    styles = [draw_frame_style(Shot(i, 0, 0, 0), no_frame_share=0.3).style for i in range(300)]
    assert 0.2 < np.mean([s == "none" for s in styles]) < 0.4
    assert all(draw_frame_style(Shot(i, 0, 0, 0)).style != "none" for i in range(300))
    with pytest.raises(ValueError, match="no_frame_share"):
        draw_frame_style(Shot(1, 0, 0, 0), no_frame_share=1.5)
    with pytest.raises(ValueError, match="frame"):
        draw_frame_style(Shot(1, 0, 0, 0, frame="bamboo"))


def _coral_inside_and_beyond(seed: int) -> tuple[float, float, set[str], set[str]]:
    """One varied photo's reef, each colony painted flat: the coral share of the interior and of the
    reef beyond it (the plane outside the interior), and the labels painted in each."""
    from quadratseg.synth import reef as reef_mod

    painted: dict[str, np.ndarray] = {}
    labels: dict[str, set[str]] = {"inside": set(), "beyond": set()}

    def flat(plane_, mask, box_xy, c, to_plane):
        coral = painted.setdefault("coral", np.zeros(plane_.shape[:2], bool))
        x0, y0 = box_xy
        coral[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] |= mask
        (ox, oy), (iw, ih) = to_plane.offset, to_plane.interior_wh
        ys, xs = np.nonzero(mask)
        inner = (xs + x0 >= ox) & (xs + x0 < ox + iw) & (ys + y0 >= oy) & (ys + y0 < oy + ih)
        if inner.any():
            labels["inside"].add(c.label)
        if (~inner).any():
            labels["beyond"].add(c.label)
        painted["box"] = np.array([ox, oy, iw, ih])

    original = reef_mod._paint
    reef_mod._paint = flat
    try:
        render_varied(
            np.random.default_rng(seed), (320, 240), (128, 128), ["Porites", "Acropora", "Pocillopora"] * 2
        )
    finally:
        reef_mod._paint = original
    coral = painted["coral"]
    ox, oy, iw, ih = painted["box"]
    inside = np.zeros(coral.shape, bool)
    inside[oy : oy + ih, ox : ox + iw] = True
    return float(coral[inside].mean()), float(coral[~inside].mean()), labels["inside"], labels["beyond"]


def test_the_reef_beyond_the_frame_goes_on_like_the_reef_inside():
    """Real quadrats lie on a reef that goes on past the frame: beyond it, the same genera at about
    the same cover. A surround of its own (dense, every genus, whatever the interior's cover) tells
    a frame model where the quadrat is from the reef alone, a cue no real photo gives."""
    shares = [_coral_inside_and_beyond(seed) for seed in range(16)]
    inside, beyond = np.array([s[0] for s in shares]), np.array([s[1] for s in shares])
    assert inside.max() - inside.min() > 0.3, inside  # covers from sparse to dense were drawn
    assert np.abs(inside - beyond).mean() < 0.1, np.c_[inside, beyond].round(2)
    assert np.corrcoef(inside, beyond)[0, 1] > 0.8, np.c_[inside, beyond].round(2)
    for _, _, genera_inside, genera_beyond in shares:
        assert genera_beyond <= genera_inside | {"Porites", "Acropora", "Pocillopora"}
