"""Keypoint templates of the quadrat and Hungarian matching of detections to them.

Templates are in *normalized quadrat coordinates*: (0, 0) is the top-left corner of the
quadrat, (1, 1) the bottom-right, x to the right, y down.

- corners: 4 points TL, TR, BR, BL (clockwise from top-left), CVAT sublabels "1".."4".
- grid: 9 rows x 13 columns = 117 intersections, row-major (left to right, then top to
  bottom), CVAT sublabels "1".."117".

Examples:
    >>> grid_template_xy().shape
    (117, 2)
    >>> m = match_to_template(corner_template_xy()[::-1] + 0.01, corner_template_xy(), max_cost=0.3)
    >>> m.detection_index.tolist()
    [3, 2, 1, 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quadratseg.errors import TemplateError

GRID_ROWS = 9
GRID_COLS = 13
N_CORNERS = 4
N_GRID = GRID_ROWS * GRID_COLS  # 117
CORNER_NAMES = ("TL", "TR", "BR", "BL")
CORNER_MAX_COST = 0.3  # upstream values, normalized units
GRID_MAX_COST = 0.12


def corner_template_xy() -> np.ndarray:
    """The 4 corners TL, TR, BR, BL as float (4, 2) in normalized quadrat coordinates."""
    return np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def grid_template_xy(rows: int = GRID_ROWS, cols: int = GRID_COLS) -> np.ndarray:
    """Grid intersections, row-major, float (rows*cols, 2) in normalized quadrat coordinates.

    Strings are evenly spaced inside the frame: column j at x = (j + 1) / (cols + 1), row i at
    y = (i + 1) / (rows + 1).
    """
    xs = (np.arange(cols) + 1.0) / (cols + 1.0)
    ys = (np.arange(rows) + 1.0) / (rows + 1.0)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def grid_neighbour_pairs(rows: int = GRID_ROWS, cols: int = GRID_COLS) -> np.ndarray:
    """Index pairs (P, 2) of horizontally and vertically adjacent grid points (row-major order)."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    horizontal = np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], axis=1)
    vertical = np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], axis=1)
    return np.concatenate([horizontal, vertical])


def grid_flip_index(rows: int = GRID_ROWS, cols: int = GRID_COLS) -> list[int]:
    """Keypoint permutation under a horizontal flip (ultralytics ``flip_idx``) for the grid."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    return idx[:, ::-1].ravel().tolist()


CORNER_FLIP_INDEX = [1, 0, 3, 2]  # TL<->TR, BR<->BL


def quadrat_side_px(points_xy: np.ndarray, visible: np.ndarray, template_xy: np.ndarray) -> float | None:
    """Mean edge length (px) of the quadrat whose template points are ``points_xy`` (visible ones).

    The homography template -> image is fitted to the visible points (exact for the 4 corners)
    and the template's unit square mapped through it. None with fewer than 4 visible points.
    """
    import cv2

    visible = np.asarray(visible, dtype=bool) & np.isfinite(points_xy).all(axis=1)
    if int(visible.sum()) < 4:
        return None
    h, _ = cv2.findHomography(
        np.asarray(template_xy, np.float64)[visible], np.asarray(points_xy, np.float64)[visible], 0
    )
    if h is None:
        return None
    square = np.c_[corner_template_xy(), np.ones(4)] @ h.T
    square = square[:, :2] / square[:, 2:3]
    return float(np.linalg.norm(np.roll(square, -1, axis=0) - square, axis=1).mean())


def inside_image(points_xy: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """(N,) bool: the points (N, 2), pixels with the origin at the top-left of the top-left pixel,
    that lie in an image of ``size_wh`` (its edges included); NaN points are outside.

    >>> inside_image(np.array([[0.0, 0.0], [640.0, 480.0], [-0.5, 10.0], [10.0, 481.0]]), (640, 480)).tolist()
    [True, True, False, False]
    """
    points = np.asarray(points_xy, dtype=np.float64)
    width, height = size_wh
    return (points >= 0).all(axis=1) & (points[:, 0] <= width) & (points[:, 1] <= height)


def point_spacing_px(points_xy: np.ndarray) -> float:
    """Median distance from each present point of (N, 2) to its nearest other one (NaN with < 2).

    For a grid it is the string spacing; NaN rows are ignored.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 2:
        return float("nan")
    gaps = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=2)
    np.fill_diagonal(gaps, np.inf)
    return float(np.median(gaps.min(axis=1)))


def fit_template(
    normalized_xy: np.ndarray, min_samples: int = 3, mad_limit: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Template (K, 2) from annotated keypoints (N, K, 2) in normalized quadrat coordinates.

    Per point and axis a robust mean: the mean of the values within ``mad_limit`` scaled median
    absolute deviations of the median (a misplaced annotation does not pull the template);
    NaN entries (points not annotated) are ignored.

    Returns:
        (template (K, 2), samples that placed each point (K,) int).

    Raises:
        TemplateError: no samples, or a point placed by fewer than ``min_samples`` samples.
    """
    stack = np.asarray(normalized_xy, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[2] != 2 or len(stack) == 0:
        raise TemplateError(
            f"need annotated keypoints (N, K, 2) from at least one sample, got shape {stack.shape}"
        )
    present = np.isfinite(stack).all(axis=2)
    counts = present.sum(axis=0)
    if (counts < min_samples).any():
        short = (np.flatnonzero(counts < min_samples) + 1).tolist()
        raise TemplateError(
            f"keypoint(s) {short[:20]}{' ...' if len(short) > 20 else ''} are annotated on fewer than "
            f"{min_samples} samples; annotate more images or lower --min-samples"
        )
    values = np.where(present[..., None], stack, np.nan)
    median = np.nanmedian(values, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(values - median), axis=0)
    close = np.abs(values - median) <= np.maximum(mad_limit * mad, 1e-6)
    kept = np.where(close, values, np.nan)
    return np.nanmean(kept, axis=0), counts


def save_template(template_xy: np.ndarray, path: str | Path) -> Path:
    """Save a template (K, 2) as ``.npy``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(template_xy, dtype=np.float64))
    return path


def load_template(path: str | Path, n_points: int | None = None) -> np.ndarray:
    """Load a template ``.npy`` and check it is (n_points, 2), finite, in normalized units."""
    path = Path(path)
    try:
        arr = np.load(path)
    except (OSError, ValueError) as exc:
        raise TemplateError(f"cannot read the keypoint template {path}: {exc}") from None
    return validate_template(arr, n_points, str(path))


def validate_template(
    template_xy: np.ndarray, n_points: int | None = None, where: str = "template"
) -> np.ndarray:
    """Return the template as float (K, 2) or raise :class:`TemplateError` saying what is wrong."""
    arr = np.asarray(template_xy, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise TemplateError(f"{where}: a template is an array (K, 2) of x, y; got shape {arr.shape}")
    if n_points is not None and arr.shape[0] != n_points:
        raise TemplateError(
            f"{where}: expected {n_points} points ({'corners' if n_points == 4 else 'grid'}), got "
            f"{arr.shape[0]}; use the template made for this task"
        )
    if not np.isfinite(arr).all():
        raise TemplateError(f"{where}: the template contains NaN or infinite values")
    if arr.min() < -0.5 or arr.max() > 1.5:
        raise TemplateError(
            f"{where}: values range {arr.min():.3g}..{arr.max():.3g}; templates are in normalized "
            "quadrat units (0..1), divide pixel templates by the image size"
        )
    return arr


@dataclass
class TemplateMatch:
    """Detections put in template order.

    Attributes:
        keypoints_xy: (K, 2) detections in template order, in the detections' frame; NaN
            where the template point found no detection within ``max_cost``.
        detection_index: (K,) index into the detections, -1 where missing.
        cost: (K,) distance in normalized units to the (aligned) template point, NaN if missing.
        n_extra: detections that were not assigned to any template point (dropped).
    """

    keypoints_xy: np.ndarray
    detection_index: np.ndarray
    cost: np.ndarray
    n_extra: int

    @property
    def missing(self) -> np.ndarray:
        """Template indices (sorted) that have no detection."""
        return np.flatnonzero(self.detection_index < 0)

    @property
    def complete(self) -> bool:
        """True when every template point was matched."""
        return bool((self.detection_index >= 0).all())


def _assign(det_n: np.ndarray, template_n: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment with a "missing" option per template point that costs ``max_cost``.

    Without that option a missing point would take its neighbour's detection and push a
    whole row of points one place along (grid spacing is below the upstream ``max_cost``).
    """
    from scipy.optimize import linear_sum_assignment

    k, m = len(template_n), len(det_n)
    cost = np.linalg.norm(template_n[:, None, :] - det_n[None, :, :], axis=2)
    padded = np.full((k, m + k), float(max_cost))
    padded[:, :m] = np.where(cost <= max_cost, cost, 10.0 * max_cost + 1.0)
    rows, cols = linear_sum_assignment(padded)
    index = np.full(k, -1, dtype=np.int64)
    costs = np.full(k, np.nan)
    real = (cols < m) & (padded[rows, np.minimum(cols, m + k - 1)] <= max_cost)
    index[rows[real]] = cols[real]
    costs[rows[real]] = cost[rows[real], cols[real]]
    return index, costs


def _fit_template_to_detections(
    template_n: np.ndarray, det_n: np.ndarray, index: np.ndarray
) -> np.ndarray | None:
    """Project the template through the homography fitted on the current matches (None if < 4)."""
    import cv2

    ok = index >= 0
    if ok.sum() < 5:  # four points fit any homography exactly: nothing to learn from them
        return None
    src = template_n[ok].astype(np.float64)
    dst = det_n[index[ok]].astype(np.float64)
    method = cv2.RANSAC if ok.sum() >= 8 else 0
    h, _ = cv2.findHomography(src, dst, method, 0.02)
    if h is None or not np.isfinite(h).all():
        return None
    proj = np.c_[template_n, np.ones(len(template_n))] @ h.T
    if np.any(np.abs(proj[:, 2]) < 1e-9):
        return None
    return proj[:, :2] / proj[:, 2:3]


ROTATION_STEP_DEG = 6.0  # the homography re-alignment absorbs the rest of a turn
FULL_TRIES = 4  # turned starts matched in full (the best by a nearest-point score)


def start_rotations_deg(step_deg: float) -> list[float]:
    """Turns (degrees) to try for the centred template: every ``step_deg`` over the whole turn,
    nearest to upright first (so that, of equally good starts, the upright one is kept).

    Examples:
        >>> start_rotations_deg(90.0)
        [0.0, 90.0, -90.0, 180.0]
    """
    starts: list[float] = []
    for degrees in np.arange(0.0, 180.0 + 1e-9, step_deg):
        starts += [float(degrees)] if degrees in (0.0, 180.0) else [float(degrees), -float(degrees)]
    return starts


def template_symmetries(template_n: np.ndarray) -> list[np.ndarray]:
    """Permutations (K,) of the template under the quarter turns that map it onto itself, identity
    first: ``perm[i]`` is the point that point ``i`` lands on when the template turns clockwise (on
    the image, y down) by ``90 * q`` degrees about its box centre. The corners have 4, the 9 x 13 grid
    2 (a half turn), an irregular fitted template possibly 1.

    Examples:
        >>> [p.tolist() for p in template_symmetries(corner_template_xy())]
        [[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]]
    """
    t = np.asarray(template_n, dtype=np.float64)
    centre = (t.min(axis=0) + t.max(axis=0)) / 2
    gaps = np.linalg.norm(t[:, None] - t[None], axis=2)
    np.fill_diagonal(gaps, np.inf)
    tolerance = 0.25 * float(gaps.min()) if len(t) > 1 else 0.0
    out = [np.arange(len(t))]
    p = t - centre
    for quarter in (1, 2, 3):
        turned = p.copy()
        for _ in range(quarter):  # clockwise on the image: (x, y) -> (-y, x)
            turned = np.stack([-turned[:, 1], turned[:, 0]], axis=1)
        dist = np.linalg.norm((turned + centre)[:, None] - t[None], axis=2)
        perm = dist.argmin(axis=1)
        if dist[np.arange(len(t)), perm].max() <= tolerance and len(set(perm.tolist())) == len(t):
            out.append(perm)
    return out


def _x_axis_angle_deg(template_n: np.ndarray, det_n: np.ndarray, index: np.ndarray) -> float:
    """Direction (degrees, image frame) of the template's x axis under the affine map fitted from the
    matched template points to their detections (needs 3 matches)."""
    ok = index >= 0
    src = np.c_[template_n[ok], np.ones(int(ok.sum()))]
    coef, *_ = np.linalg.lstsq(src, det_n[index[ok]], rcond=None)  # (3, 2): [x y 1] @ coef
    return float(np.degrees(np.arctan2(coef[0, 1], coef[0, 0])))


def follow_the_image(
    template_n: np.ndarray, det_n: np.ndarray, index: np.ndarray, costs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Relabel a match (``index`` (K,) detection per template point, ``costs`` (K,)) by the template
    symmetry that makes it follow the image: the placement whose template x axis points within
    [-45, -45 + 360 / n) degrees of the image's x (n placements). Fewer than 3 matches: unchanged.

    Examples:
        >>> det = corner_template_xy()[[3, 0, 1, 2]]  # a square whose TL slot holds the image's BL
        >>> follow_the_image(corner_template_xy(), det, np.arange(4), np.zeros(4))[0].tolist()
        [1, 2, 3, 0]
    """
    symmetries = template_symmetries(template_n)
    if len(symmetries) == 1 or int((index >= 0).sum()) < 3:
        return index, costs
    best, best_key = (index, costs), np.inf
    for perm in symmetries:
        relabelled, moved = np.full_like(index, -1), np.full_like(costs, np.nan)
        relabelled[perm], moved[perm] = index, costs
        key = (_x_axis_angle_deg(template_n, det_n, relabelled) + 45.0) % 360.0
        if key < best_key:
            best, best_key = (relabelled, moved), key
    return best


def long_side_first(corners_xy: np.ndarray, aspect: float) -> np.ndarray:
    """Slot order (4,) that gives a rectangular quadrat's corners (4, 2: TL, TR, BR, BL as the image
    shows them) the sides the warp expects: for ``aspect`` = width / height > 1 the TL-TR and BR-BL
    sides are the longer pair in the photo (< 1: the shorter). ``[0, 1, 2, 3]`` when they already
    are (a square quadrat, a corner missing), else the quarter turn ``[3, 0, 1, 2]``: the image's BL
    becomes TL. A square template cannot tell a quadrat's width from its height; the photo can.

    Examples:
        >>> portrait = np.array([[0, 0], [50, 0], [50, 100], [0, 100]], float)  # 1 x 0.5 m, upright
        >>> long_side_first(portrait, 2.0).tolist(), long_side_first(portrait, 0.5).tolist()
        ([3, 0, 1, 2], [0, 1, 2, 3])
    """
    corners = np.asarray(corners_xy, dtype=np.float64)
    keep = np.arange(4)
    if abs(float(aspect) - 1.0) < 1e-9 or corners.shape != (4, 2) or not np.isfinite(corners).all():
        return keep
    side = [float(np.linalg.norm(corners[(i + 1) % 4] - corners[i])) for i in range(4)]
    across = side[0] + side[2] >= side[1] + side[3]  # TL-TR and BR-BL: the longer pair
    return keep if across == (aspect > 1.0) else np.array([3, 0, 1, 2])


SMALL_TEMPLATE = 8  # templates this small are also laid through every pair of detections


def pair_guesses(template_n: np.ndarray, det_n: np.ndarray) -> list[np.ndarray]:
    """The template (K, 2) moved by each similarity (turn, scale, shift) that puts two of its points
    on two detections, for every ordered pair of detections and of template points: a start at any
    camera roll that needs neither the detections' centre nor their spread (three of four corners).

    Examples:
        >>> len(pair_guesses(corner_template_xy(), corner_template_xy()[:3]))
        72
    """
    out = []
    t = template_n[:, 0] + 1j * template_n[:, 1]
    d = det_n[:, 0] + 1j * det_n[:, 1]
    for a in range(len(d)):
        for b in range(len(d)):
            if a == b:
                continue
            for i in range(len(t)):
                for j in range(len(t)):
                    if i == j or abs(t[j] - t[i]) < 1e-9:
                        continue
                    z = (d[b] - d[a]) / (t[j] - t[i]) * (t - t[i]) + d[a]
                    out.append(np.stack([z.real, z.imag], axis=1))
    return out


def match_to_template(
    detections_xy: np.ndarray,
    template_xy: np.ndarray,
    max_cost: float,
    frame_size: tuple[float, float] | None = None,
    refine_iterations: int = 2,
    outlier_factor: float | None = 5.0,
    rotation_step_deg: float = ROTATION_STEP_DEG,
) -> TemplateMatch:
    """Put detected keypoints in template order with Hungarian matching.

    The cost is the Euclidean distance divided by one length for both axes (the frame's longer
    side), so a point off by 10 px costs the same across and along a 4:3 photo; the template is
    first laid over the whole frame (x by its width, y by its height). Pairs whose cost exceeds
    ``max_cost`` are rejected (the template point is reported missing, never invented, and
    leftover detections are dropped). With ``refine_iterations`` > 0, a homography fitted to
    the current matches aligns the template to the detections and matching runs again, which
    absorbs camera tilt, shift and rotation that a fixed template cannot.

    Args:
        detections_xy: (M, 2) detected points, pixels if ``frame_size`` is given, else normalized.
        template_xy: (K, 2) template in normalized quadrat coordinates.
        max_cost: rejection threshold, in units of the frame's longer side (upstream: 0.3
            corners, 0.12 grid).
        frame_size: (width, height) of the pixel frame of the detections.
        refine_iterations: homography re-alignment rounds (0 = plain Hungarian).
        outlier_factor: after alignment, also reject matches farther than this many times the
            median match distance (a false detection near a missing point is then not taken
            for it); ``None`` keeps only ``max_cost``. Never tighter than 0.01 normalized.
        rotation_step_deg: the centred template is also tried turned by every multiple of this
            angle over the whole turn (any camera roll); the ``FULL_TRIES`` turns lying closest to
            the detections are matched in full. Of all starts, the one whose final assignment has
            the lowest objective (match distances plus ``max_cost`` per missing point) wins.

    The slots then follow the image (:func:`follow_the_image`): of the template's own symmetric
    placements (the corners' four quarter turns, the 9 x 13 grid's half turn), the one whose x axis
    points within [-45, -45 + 360 / n) degrees of the image's x axis, n the number of placements:
    corners come out TL, TR, BR, BL as the image shows them, whatever the camera's roll.
    """
    template_n = validate_template(template_xy)
    det = np.asarray(detections_xy, dtype=np.float64).reshape(-1, 2)
    det = det[np.isfinite(det).all(axis=1)] if len(det) else det
    k = len(template_n)
    if len(det) == 0:
        return TemplateMatch(np.full((k, 2), np.nan), np.full(k, -1), np.full(k, np.nan), 0)
    frame = np.array(frame_size, dtype=np.float64) if frame_size is not None else np.ones(2)
    length = float(frame.max())  # one length for x and y: isotropic costs
    det_n = det / length
    # The first guess: the template laid over the whole frame. A second one: template moved and
    # scaled onto the detections' centroid/spread, which rescues shifted or zoomed grids.
    guesses = [template_n * (frame / length)]
    # ... laid over the detections' box (3 of 4 corners already span the quadrat's box)
    t_lo, t_hi = template_n.min(axis=0), template_n.max(axis=0)
    d_lo, d_hi = det_n.min(axis=0), det_n.max(axis=0)
    if len(det_n) >= 3 and np.all(t_hi > t_lo) and np.all(d_hi > d_lo):
        guesses.append((template_n - t_lo) / (t_hi - t_lo) * (d_hi - d_lo) + d_lo)
    spread_t, spread_d = template_n.std(axis=0), det_n.std(axis=0)
    if len(det_n) >= 4 and np.all(spread_t > 0) and np.all(spread_d > 0):
        # ... and turned, for quadrats photographed askew or with the camera rolled: the turns whose
        # template lies closest to the detections (a cheap nearest-point score) are tried in full
        scale = float(np.sqrt((spread_d**2).sum() / (spread_t**2).sum()))
        centred = (template_n - template_n.mean(axis=0)) * scale
        turned = []
        for degrees in start_rotations_deg(rotation_step_deg):
            a = np.deg2rad(degrees)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            guess = centred @ rot.T + det_n.mean(axis=0)
            nearest = np.linalg.norm(guess[:, None, :] - det_n[None, :, :], axis=2).min(axis=1)
            turned.append((float(np.minimum(nearest, max_cost).sum()), len(turned), guess))
        guesses += [guess for _, _, guess in sorted(turned, key=lambda t: t[:2])[:FULL_TRIES]]
    if k <= SMALL_TEMPLATE and 2 <= len(det_n) <= 3 * SMALL_TEMPLATE:
        # few points (the corners): the template through every pair of detections, any turn
        guesses[1:1] = pair_guesses(template_n, det_n)
    best: tuple[int, float, np.ndarray, np.ndarray] = (-1, np.inf, np.full(k, -1), np.full(k, np.nan))
    for guess in guesses:
        aligned = guess
        index, costs = _assign(det_n, aligned, max_cost)
        for _ in range(refine_iterations):
            projected = _fit_template_to_detections(template_n, det_n, index)
            if projected is None:
                break
            aligned = projected
            index, costs = _assign(det_n, aligned, max_cost)
        if outlier_factor is not None and refine_iterations > 0 and (index >= 0).sum() >= 5:
            tight = min(max_cost, max(outlier_factor * float(np.nanmedian(costs)), 0.01))
            index, costs = _assign(det_n, aligned, tight)
        # the assignment's own objective: distances of the matches, max_cost per missing point
        total = float(np.nansum(costs)) + max_cost * int((index < 0).sum())
        if best is None or total < best[1]:
            best = (int((index >= 0).sum()), total, index, costs)
        if best[0] >= 0.9 * min(k, len(det_n)) and float(np.nanmax(best[3])) < max_cost / 6:
            break  # nearly every point matched well within max_cost: other starts are not needed
    _, _, index, costs = best
    index, costs = follow_the_image(template_n, det_n, index, costs)
    keypoints = np.full((k, 2), np.nan)
    keypoints[index >= 0] = det[index[index >= 0]]
    n_extra = len(det) - int((index >= 0).sum())
    return TemplateMatch(keypoints, index, costs, n_extra)
