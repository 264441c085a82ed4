"""Template matching as a table of synthetic cases."""

import numpy as np
import pytest

from quadratseg.errors import TemplateError
from quadratseg.keypoints import (
    CORNER_FLIP_INDEX,
    CORNER_MAX_COST,
    GRID_MAX_COST,
    corner_template_xy,
    fit_template,
    grid_flip_index,
    grid_neighbour_pairs,
    grid_template_xy,
    load_template,
    match_to_template,
    save_template,
)
from quadratseg.warp import transform_points

SIZE = 1000.0


def test_templates_shape_and_order():
    grid = grid_template_xy()
    assert grid.shape == (117, 2)
    assert np.all(np.diff(grid[:13, 0]) > 0) and np.all(
        grid[:13, 1] == grid[0, 1]
    )  # first row, left to right
    assert grid[13, 1] > grid[12, 1]  # then the next row
    assert corner_template_xy().tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]
    assert len(grid_neighbour_pairs()) == 9 * 12 + 8 * 13


@pytest.mark.parametrize(
    "template, flip", [(grid_template_xy(), grid_flip_index()), (corner_template_xy(), CORNER_FLIP_INDEX)]
)
def test_flip_index_mirrors_the_template(template, flip):
    mirrored = template.copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    assert np.allclose(mirrored[flip], template)
    assert sorted(flip) == list(range(len(template)))


def perspective(points_n, strength, angle_deg):
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [strength, strength / 2, 1]])
    centre = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    back = np.array([[0.8, 0, 0.5], [0, 0.8, 0.5], [0, 0, 1]])
    return transform_points(points_n, back @ tilt @ rot @ centre)


CASES = {
    # name: (transform of the normalized template, jitter px, (missing, extra) for the grid,
    #        (missing, extra) for the corners)
    "permuted": (lambda p: p, 0.0, (0, 0), (0, 0)),
    "jittered": (lambda p: p, 4.0, (0, 0), (0, 0)),
    "missing": (lambda p: p, 2.0, (8, 0), (1, 0)),
    "extra": (lambda p: p, 2.0, (0, 10), (0, 2)),
    "missing_and_extra": (lambda p: p, 2.0, (6, 6), (1, 1)),
    "shifted_scaled": (lambda p: p * 0.7 + 0.15, 2.0, (3, 3), (0, 1)),
    "rotated_8deg": (lambda p: perspective(p, 0.0, 8), 2.0, (0, 0), (1, 0)),
    "perspective": (lambda p: perspective(p, 0.25, 3), 2.0, (4, 4), (1, 0)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("which", ["grid", "corners"])
def test_matching_table(name, which):
    transform, jitter, grid_counts, corner_counts = CASES[name]
    template = grid_template_xy() if which == "grid" else corner_template_xy()
    max_cost = GRID_MAX_COST if which == "grid" else CORNER_MAX_COST
    n_missing, n_extra = grid_counts if which == "grid" else corner_counts
    successes, errors = 0, []
    for trial in range(20):
        rng = np.random.default_rng(trial)
        true = transform(template) * SIZE
        keep = np.sort(rng.permutation(len(true))[: len(true) - n_missing])
        det = true[keep] + rng.normal(0, jitter, (len(keep), 2))
        # false points away from every true point, as a detector's spurious hits on coral; a
        # false corner within max_cost of a missing corner cannot be told apart, so corners'
        # false points keep farther away
        clearance = 0.03 if which == "grid" else max_cost
        extras = []
        while len(extras) < n_extra:
            p = rng.uniform(0, SIZE, 2)
            if np.linalg.norm(true - p, axis=1).min() > clearance * SIZE:
                extras.append(p)
        det = np.vstack([det, *extras]) if extras else det
        order = rng.permutation(len(det))
        match = match_to_template(det[order], template, max_cost, frame_size=(SIZE, SIZE))
        position = np.argsort(order)
        expected = np.full(len(true), -1)
        expected[keep] = position[: len(keep)]
        successes += int(np.array_equal(match.detection_index, expected))
        ok = match.detection_index >= 0
        errors.append(np.linalg.norm(match.keypoints_xy[ok] - true[ok], axis=1).mean())
        assert match.n_extra == len(det) - ok.sum()
        assert np.isnan(match.keypoints_xy[~ok]).all()
    assert successes / 20 >= 0.95, f"{name}/{which}: {successes}/20"
    assert np.mean(errors) < 3 * jitter + 1e-6


def test_mirrored_grid_is_matched_in_template_order_not_detection_order():
    template = grid_template_xy()
    mirrored = template.copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]  # an image flipped left-right
    match = match_to_template(mirrored * SIZE, template, GRID_MAX_COST, frame_size=(SIZE, SIZE))
    assert match.complete
    # the point found at template position i is the detection that now sits there
    assert np.allclose(match.keypoints_xy / SIZE, template)
    assert match.detection_index.tolist() == grid_flip_index()


def test_nothing_detected_and_far_detections():
    template = corner_template_xy()
    empty = match_to_template(np.zeros((0, 2)), template, CORNER_MAX_COST)
    assert not empty.complete and len(empty.missing) == 4
    far = match_to_template(np.array([[5.0, 5.0]]), template, CORNER_MAX_COST)
    assert len(far.missing) == 4 and far.n_extra == 1


def test_template_files(tmp_path):
    path = save_template(grid_template_xy(), tmp_path / "kp_template_grid.npy")
    assert load_template(path, 117).shape == (117, 2)
    with pytest.raises(TemplateError, match="expected 4 points"):
        load_template(path, 4)
    np.save(tmp_path / "px.npy", grid_template_xy() * 1920)
    with pytest.raises(TemplateError, match="normalized"):
        load_template(tmp_path / "px.npy", 117)
    np.save(tmp_path / "bad.npy", np.zeros((117, 3)))
    with pytest.raises(TemplateError, match="shape"):
        load_template(tmp_path / "bad.npy")
    (tmp_path / "corrupt.npy").write_bytes(b"nonsense")
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path / "corrupt.npy")


def test_matching_costs_are_isotropic_on_a_wide_frame():
    """A point 40 px off across a 1600 x 400 frame costs what 40 px along it costs."""
    template = corner_template_xy()
    frame = (1600, 400)
    corners = template * frame
    moved = corners + np.array([[40.0, 0.0], [0.0, 40.0], [0.0, 0.0], [0.0, 0.0]])
    match = match_to_template(moved, template, CORNER_MAX_COST, frame_size=frame, refine_iterations=0)
    assert match.complete
    assert match.cost[0] == pytest.approx(match.cost[1]) == pytest.approx(40 / 1600)


def test_fit_template_is_a_robust_mean_and_refuses_thin_evidence():
    rng = np.random.default_rng(0)
    truth = grid_template_xy()
    stack = truth + rng.normal(0, 0.002, (12, 117, 2))
    stack[0] += 0.2  # one badly warped annotation
    stack[1, :5] = np.nan  # five points not annotated on one image
    template, counts = fit_template(stack)
    assert np.abs(template - truth).max() < 0.003  # the outlier did not pull the template
    assert counts[:5].tolist() == [11] * 5 and counts[5] == 12
    with pytest.raises(
        TemplateError, match=r"keypoint\(s\) \[1, 2, 3, 4, 5\] are annotated on fewer than 12"
    ):
        fit_template(stack, min_samples=12)
    with pytest.raises(TemplateError, match="at least one sample"):
        fit_template(np.zeros((0, 117, 2)))


def _expected_grid_slots(true: np.ndarray) -> tuple[np.ndarray, float]:
    """Physical grid index in each slot (identity, or the half turn 116 - i) and the margin in degrees
    of the first row's direction from the rule's boundary: rows run rightwards, or downwards for a
    grid seen near a quarter turn (the row direction within [-45, 135) degrees of the image's x)."""
    row = true[12] - true[0]
    theta = np.degrees(np.arctan2(row[1], row[0]))
    upright = -45 <= theta < 135
    margin = min(abs(theta + 45), abs(theta - 135), abs(theta - 315), abs(theta + 225))
    slots = np.arange(117) if upright else 116 - np.arange(117)
    return slots, margin


@pytest.mark.parametrize("angle", [30, 90, 135, 180, 270])
@pytest.mark.parametrize("which", ["grid", "corners"])
def test_any_camera_roll_is_matched_and_ordered_as_the_image_shows(which, angle):
    """Quadrats photographed with the camera turned by any angle (mild perspective, 2 px jitter, a few
    points missing, shuffled): every point lands in its slot, the slots following the image (corners
    TL, TR, BR, BL as the image shows them; grid rows rightwards, or downwards near a quarter turn)."""
    template = grid_template_xy() if which == "grid" else corner_template_xy()
    max_cost = GRID_MAX_COST if which == "grid" else CORNER_MAX_COST
    n_missing = 6 if which == "grid" else 1
    definite = 0
    for trial in range(10):
        rng = np.random.default_rng(100 + trial)
        true = perspective(template, 0.12, angle + rng.uniform(-3, 3)) * SIZE
        keep = np.sort(rng.permutation(len(true))[n_missing:])
        det = true[keep] + rng.normal(0, 2.0, (len(keep), 2))
        order = rng.permutation(len(det))
        match = match_to_template(det[order], template, max_cost, frame_size=(SIZE, SIZE))
        if which == "corners":
            first, second = np.argsort(true.sum(axis=1))[:2]
            margin = float(true[second].sum() - true[first].sum())
            # two corners within 20 px (2 % of the side) of the top-left: either may be the image's TL
            starts = [first] if margin > 20 else [first, second]
            candidates = [(start + np.arange(4)) % 4 for start in starts]
        else:
            physical, margin = _expected_grid_slots(true)
            # within 5 degrees of the rule's boundary both placements are the same picture
            candidates = [physical] if margin > 5 else [np.arange(117), 116 - np.arange(117)]
        position = np.argsort(order)  # detection index of each kept true point
        detection_of = np.full(len(true), -1)
        detection_of[keep] = position
        outcomes = [detection_of[c] for c in candidates]
        assert any(np.array_equal(match.detection_index, o) for o in outcomes), (trial, match.detection_index)
        definite += len(candidates) == 1
    # a 135 degree roll puts the grid's rows on the diagonal, the rule's boundary (the two placements
    # are the same picture); the corners' top-left is then decided by the perspective
    assert definite == {("grid", 135): 0, ("corners", 135): 8}.get((which, angle), 10)
