"""Two surveys of one quadrat aligned in the rectified frame, from the photos themselves.

The warp to the quadrat's corners removes most of the difference between two years, not all of it
(corner error, a frame placed a few cm off, another lens), and a quadrat photographed turned by a
quarter or half turn comes out of the warp turned. :func:`register_photos` finds the homography
*moving px -> fixed px* (both warped frames) from SIFT features matched with Lowe's ratio test and
a RANSAC homography, on contrast-normalised grey images (another year's light), with the grid
strings and the frame's margin left out (they sit at the same place in every year whatever the reef
did). The quarter turn (0, 90, 180, 270 degrees, clockwise) is read from the homography and
undone by it; what is left must look like a re-placed frame (:class:`RegistrationLimits`, in
quadrat units: two surveys warped at different sizes are the same quadrat), else the pair is refused
with the reason (different quadrats paired by mistake, a photo that shows too little of the reef).

:func:`register_masks` aligns two maps from their colony outlines alone (TagLab projects without
photos): ECC on the blurred union of the colonies, a Euclidean motion.

The residual is the median distance (fixed px) between each inlier's fixed point and its moving
point mapped by the homography.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from quadratseg.warp import transform_points


@dataclass(frozen=True)
class RegistrationLimits:
    """What a pair of surveys of one quadrat may differ by, after the quarter turn is undone.

    Attributes:
        min_inliers: fewest RANSAC inliers.
        min_inlier_share: fewest inliers as a share of the ratio-test matches.
        max_shift: largest shift of the quadrat's centre, as a share of the fixed frame's side.
        max_scale: largest scale change (and 1 / it the smallest), the two frames' sizes taken out
            (the same quadrat warped at 320 px and at 640 px is a scale of 1).
        max_angle_deg: largest rotation beyond the quarter turn.
        max_residual_px: largest median residual, as px of a 1024 px side.
        feature_side_px: photos are resized to this longer side to find features.
        min_correlation: lowest correlation of the photos after an intensity alignment (the same
            quadrat gave 0.73-0.90 through the chain at 256 px, different quadrats at most 0.27).
    """

    min_inliers: int = 25
    min_inlier_share: float = 0.15
    max_shift: float = 0.2
    max_scale: float = 1.25
    max_angle_deg: float = 20.0
    max_residual_px: float = 6.0
    feature_side_px: int = 1024
    min_correlation: float = 0.5


@dataclass
class Registration:
    """The outcome of aligning a moving survey to a fixed one.

    Attributes:
        ok: True when the pair is aligned.
        reason: why not, when ``ok`` is False.
        homography: (3, 3) moving px -> fixed px (warped frames), None when refused.
        turn_deg: how far the moving photo is turned clockwise against the fixed one (0, 90, 180,
            270); the homography undoes it.
        residual_px: median inlier residual in fixed px.
        inliers, matches: RANSAC inliers and ratio-test matches.
        shift_px, scale, angle_deg: what is left after the quarter turn (the frame re-placed): the
            centre's shift in fixed px, the scale against the frames' sizes (:func:`decompose`).
        method: ``features`` or ``intensity``; correlation: the photos' correlation (intensity).
    """

    ok: bool
    reason: str = ""
    homography: np.ndarray | None = None
    turn_deg: int = 0
    residual_px: float = float("nan")
    inliers: int = 0
    matches: int = 0
    shift_px: float = float("nan")
    scale: float = float("nan")
    angle_deg: float = float("nan")
    method: str = ""
    correlation: float = float("nan")

    def summary(self) -> dict[str, object]:
        """JSON-ready fields (the homography as a list, what was not measured None)."""
        values = asdict(self)
        values["homography"] = self.homography.tolist() if self.homography is not None else None
        out: dict[str, object] = {}
        for key, value in values.items():
            if isinstance(value, float):
                value = round(value, 3) if np.isfinite(value) else None  # NaN: not measured
            out[key] = value
        return out


def quarter_turn(turn_deg: int, size: tuple[int, int]) -> np.ndarray:
    """The homography (3, 3) turning a ``size=(w, h)`` image clockwise by ``turn_deg`` (0, 90, 180,
    270), pixel-corner convention: the turned image is (h, w) for 90 and 270.

    Examples:
        >>> (quarter_turn(90, (4, 2)) @ [0, 0, 1]).tolist()  # TL goes to the top right of the (2, 4) image
        [2.0, 0.0, 1.0]
    """
    w, h = size
    turns = {
        0: [[1, 0, 0], [0, 1, 0]],
        90: [[0, -1, h], [1, 0, 0]],
        180: [[-1, 0, w], [0, -1, h]],
        270: [[0, 1, 0], [-1, 0, w]],
    }
    if turn_deg % 360 not in turns:
        raise ValueError(f"a quarter turn is 0, 90, 180 or 270 degrees, got {turn_deg}")
    return np.array([*turns[turn_deg % 360], [0, 0, 1]], dtype=np.float64)


def _grey(image_rgb: np.ndarray, scale: float) -> np.ndarray:
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY) if image_rgb.ndim == 3 else image_rgb
    if scale != 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey)


def _feature_mask(shape_hw: tuple[int, int], ignore: np.ndarray | None, scale: float) -> np.ndarray:
    """255 where features may be taken: off the frame's margin (3 % of the side) and, dilated,
    off the ``ignore`` pixels (the grid strings)."""
    h, w = shape_hw
    mask = np.zeros((h, w), np.uint8)
    margin = max(2, round(0.03 * min(h, w)))
    mask[margin : h - margin, margin : w - margin] = 255
    if ignore is not None:
        small = cv2.resize(ignore.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        small = cv2.dilate(small, np.ones((7, 7), np.uint8))
        mask[small > 0] = 0
    return mask


def _features(grey: np.ndarray, mask: np.ndarray) -> tuple[list[cv2.KeyPoint], np.ndarray | None]:
    sift = cv2.SIFT_create(nfeatures=4000)
    return sift.detectAndCompute(grey, mask)


def decompose(
    homography: np.ndarray, size: tuple[int, int], moving_size: tuple[int, int] | None = None
) -> tuple[int, float, float, float]:
    """What a moving -> fixed homography says of the moving photo, in quadrat units: (turn_deg, how
    far it is turned clockwise against the fixed one, 0, 90, 180 or 270, which the homography
    undoes; the shift in fixed px between where the moving frame's centre lands and the fixed
    frame's centre; the scale and the angle in degrees left after that turn), for a fixed frame of
    ``size=(w, h)`` and a moving frame of ``moving_size=(w, h)`` (``size`` when None).

    The scale is measured against the frames' own sizes (each frame's px divided by the square root
    of its area): the same quadrat warped at 320 px and at 640 px is a scale of 1.

    Examples:
        >>> decompose(quarter_turn(270, (10, 10)), (10, 10))[0]  # undoes a photo turned 90 clockwise
        90
        >>> half = np.diag([0.5, 0.5, 1.0])  # a 640 px warp onto a 320 px one of the same quadrat
        >>> decompose(half, (320, 320), (640, 640))[1:3]
        (0.0, 1.0)
    """
    moving_size = tuple(moving_size or size)
    a = homography[:2, :2] / homography[2, 2]
    angle = float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))  # the homography's clockwise turn
    undo = round(angle / 90.0) % 4 * 90
    turn = (360 - undo) % 360
    rest = angle - undo
    rest = (rest + 180) % 360 - 180
    w, h = size
    mw, mh = moving_size
    frames = float(np.sqrt((w * h) / (mw * mh)))  # fixed px per moving px when both frames show the quadrat
    scale = float(np.sqrt(abs(np.linalg.det(a)))) / frames
    landed = transform_points(np.array([[mw / 2, mh / 2]]), homography)
    shift = float(np.linalg.norm(landed - np.array([[w / 2, h / 2]])))
    return turn, shift, scale, float(rest)


def register_photos(
    fixed_rgb: np.ndarray,
    moving_rgb: np.ndarray,
    fixed_ignore: np.ndarray | None = None,
    moving_ignore: np.ndarray | None = None,
    limits: RegistrationLimits | None = None,
) -> Registration:
    """Align the warped photo ``moving_rgb`` to ``fixed_rgb`` (HWC uint8 RGB or grey, warped frames):
    features first (:func:`register_features`); when too few agree (blurred, small or low-texture
    photos), intensity (:func:`register_intensity`); the outcome checked against ``limits``
    (:func:`check_plausible`).

    Args:
        fixed_rgb: the earlier survey's warped (grid-free when available) photo.
        moving_rgb: the later survey's photo, in the same form.
        fixed_ignore: bool (H, W) pixels of ``fixed_rgb`` to leave out (grid masks), or None.
        moving_ignore: the same for ``moving_rgb``.
        limits: what a pair may differ by (:class:`RegistrationLimits`; its defaults when None).

    Returns:
        A :class:`Registration` (``method`` says which one aligned it); ``ok`` False with the reasons
        of both methods when the pair cannot be aligned.
    """
    limits = limits or RegistrationLimits()
    by_features = register_features(fixed_rgb, moving_rgb, fixed_ignore, moving_ignore, limits)
    if by_features.ok:
        return check_plausible(by_features, fixed_rgb.shape[:2], limits)
    by_intensity = register_intensity(fixed_rgb, moving_rgb, fixed_ignore, limits)
    if by_intensity.ok:
        return check_plausible(by_intensity, fixed_rgb.shape[:2], limits)
    by_intensity.reason = (
        f"the photos do not show the same reef (features: {by_features.reason}; intensity: "
        f"{by_intensity.reason}): different quadrats paired by mistake, or a photo too blurred or dark"
    )
    by_intensity.matches, by_intensity.inliers = by_features.matches, by_features.inliers
    return by_intensity


def register_features(
    fixed_rgb: np.ndarray,
    moving_rgb: np.ndarray,
    fixed_ignore: np.ndarray | None,
    moving_ignore: np.ndarray | None,
    limits: RegistrationLimits,
) -> Registration:
    """SIFT features, Lowe's ratio test and a RANSAC homography (moving px -> fixed px); the residual
    is the inliers' median distance (fixed px)."""
    fh, fw = fixed_rgb.shape[:2]
    mh, mw = moving_rgb.shape[:2]
    f_scale = min(1.0, limits.feature_side_px / max(fh, fw))
    m_scale = min(1.0, limits.feature_side_px / max(mh, mw))
    f_grey, m_grey = _grey(fixed_rgb, f_scale), _grey(moving_rgb, m_scale)
    kf, df = _features(f_grey, _feature_mask(f_grey.shape, fixed_ignore, f_scale))
    km, dm = _features(m_grey, _feature_mask(m_grey.shape, moving_ignore, m_scale))
    if df is None or dm is None or len(kf) < limits.min_inliers or len(km) < limits.min_inliers:
        return Registration(
            False,
            f"too few features ({len(kf)} and {len(km)}; need {limits.min_inliers}): a photo shows too "
            "little texture (blank, blurred or dark)",
            method="features",
        )
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dm, df, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < limits.min_inliers:
        return Registration(
            False,
            f"only {len(good)} feature matches (need {limits.min_inliers})",
            matches=len(good),
            method="features",
        )
    # points in corner-convention px of the full-size warped frames
    src = (np.array([km[g.queryIdx].pt for g in good]) + 0.5) / m_scale
    dst = (np.array([kf[g.trainIdx].pt for g in good]) + 0.5) / f_scale
    threshold = 3.0 / f_scale
    homography, inlier_mask = cv2.findHomography(
        src, dst, cv2.RANSAC, threshold, maxIters=5000, confidence=0.999
    )
    inliers = int(inlier_mask.sum()) if inlier_mask is not None else 0
    if homography is None or inliers < limits.min_inliers or inliers < limits.min_inlier_share * len(good):
        return Registration(
            False,
            f"{inliers} of {len(good)} feature matches agree on one alignment (need {limits.min_inliers} "
            f"and {limits.min_inlier_share:.0%})",
            inliers=inliers,
            matches=len(good),
            method="features",
        )
    keep = inlier_mask.ravel().astype(bool)
    residual = float(np.median(np.linalg.norm(transform_points(src[keep], homography) - dst[keep], axis=1)))
    turn, shift, scale, angle = decompose(homography, (fw, fh), (mw, mh))
    return Registration(
        True, "", homography, turn, residual, inliers, len(good), shift, scale, angle, "features"
    )


def _intensity_image(grey: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A grey photo (H, W) resampled by ``homography`` into ``size=(w, h)`` working px, its light's slow
    changes removed (minus a blur of 1/12 of the side), lightly blurred and standardised, float32."""
    from quadratseg.warp import warp_image

    image = warp_image(grey.astype(np.float32), homography, size)
    image = image - cv2.GaussianBlur(image, (0, 0), max(size) / 12)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    return ((image - image.mean()) / (image.std() + 1e-6)).astype(np.float32)


def register_intensity(
    fixed_rgb: np.ndarray,
    moving_rgb: np.ndarray,
    fixed_ignore: np.ndarray | None,
    limits: RegistrationLimits,
    side_px: int = 256,
) -> Registration:
    """Intensity registration (ECC) of two warped photos: at ``side_px`` a Euclidean motion from each
    quarter turn, the best one refined to a homography at twice that side; accepted when the
    correlation reaches ``limits.min_correlation`` (photos of different reefs stay far below). The
    residual is the median shift (fixed px) left between the aligned photos in 4 x 4 tiles (phase
    correlation): an upper bound, as it also holds the reef's own changes between the surveys."""
    grey_f = cv2.cvtColor(fixed_rgb, cv2.COLOR_RGB2GRAY) if fixed_rgb.ndim == 3 else fixed_rgb
    grey_m = cv2.cvtColor(moving_rgb, cv2.COLOR_RGB2GRAY) if moving_rgb.ndim == 3 else moving_rgb
    fh, fw = grey_f.shape
    mh, mw = grey_m.shape
    to_fixed = np.diag([fw / mw, fh / mh, 1.0])  # the moving frame's size onto the fixed one's
    turns = (0, 90, 180, 270) if fw == fh else (0, 180)
    best: tuple[float, np.ndarray, np.ndarray, float] | None = None  # (cc, warp, start, scale)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    for level, side in enumerate((side_px, 2 * side_px)):
        s = min(1.0, side / max(fw, fh))
        work = (max(8, round(fw * s)), max(8, round(fh * s)))
        zoom = np.diag([s, s, 1.0])
        fixed = _intensity_image(grey_f, zoom, work)
        mask = None
        if fixed_ignore is not None:
            small = cv2.resize(fixed_ignore.astype(np.uint8), work, interpolation=cv2.INTER_NEAREST)
            mask = (cv2.dilate(small, np.ones((3, 3), np.uint8)) == 0).astype(np.uint8) * 255
        candidates = turns if level == 0 else [None]
        for turn in candidates:
            if turn is None:  # refine the best turn as a homography at this level
                assert best is not None
                start, motion = best[2], cv2.MOTION_HOMOGRAPHY
                rescale = np.diag([s / best[3], s / best[3], 1.0])
                warp = (rescale @ best[1] @ np.linalg.inv(rescale)).astype(np.float32)
            else:
                start = quarter_turn((360 - turn) % 360, (fw, fh)) @ to_fixed
                motion, warp = cv2.MOTION_EUCLIDEAN, np.eye(2, 3, dtype=np.float32)
            moving = _intensity_image(grey_m, zoom @ start, work)
            try:
                cc, warp = cv2.findTransformECC(fixed, moving, warp, motion, criteria, mask, 5)
            except cv2.error:
                continue
            warp3 = warp if warp.shape == (3, 3) else np.vstack([warp, [0, 0, 1]]).astype(np.float32)
            if best is None or turn is None or cc > best[0]:
                best = (float(cc), warp3.astype(np.float64), start, s)
    if best is None or best[0] < limits.min_correlation:
        found = f"{best[0]:.2f}" if best else "none"
        return Registration(
            False,
            f"the photos' correlation after the best alignment is {found} (need {limits.min_correlation})",
            method="intensity",
            correlation=round(best[0], 3) if best else float("nan"),
        )
    cc, warp, start, s = best
    zoom = np.diag([s, s, 1.0])
    # ECC's warp maps fixed working px to moving working px, pixel centres: to pixel corners
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    fixed_to_moving_work = shift @ warp @ np.linalg.inv(shift)
    homography = np.linalg.inv(zoom) @ np.linalg.inv(fixed_to_moving_work) @ zoom @ start
    homography /= homography[2, 2]
    residual = tile_residual_px(grey_f, grey_m, homography)
    turn, shift, scale, angle = decompose(homography, (fw, fh), (mw, mh))
    return Registration(
        True, "", homography, turn, residual, 0, 0, shift, scale, angle, "intensity", round(cc, 3)
    )


def tile_residual_px(
    fixed_grey: np.ndarray, moving_grey: np.ndarray, homography: np.ndarray, tiles: int = 4
) -> float:
    """The median shift (fixed px) left between the fixed photo and the moving one aligned by
    ``homography``, measured by phase correlation in ``tiles`` x ``tiles`` tiles (those with a clear
    peak)."""
    from quadratseg.warp import warp_image

    h, w = fixed_grey.shape
    aligned = warp_image(moving_grey.astype(np.float32), homography, (w, h))
    fixed = fixed_grey.astype(np.float32)
    th, tw = h // tiles, w // tiles
    window = cv2.createHanningWindow((tw, th), cv2.CV_32F)
    shifts = []
    for i in range(tiles):
        for j in range(tiles):
            a = fixed[i * th : (i + 1) * th, j * tw : (j + 1) * tw]
            b = aligned[i * th : (i + 1) * th, j * tw : (j + 1) * tw]
            (dx, dy), response = cv2.phaseCorrelate(a - a.mean(), b - b.mean(), window)
            if response > 0.05:
                shifts.append(float(np.hypot(dx, dy)))
    return float(np.median(shifts)) if shifts else float("nan")


def check_plausible(
    result: Registration, fixed_shape_hw: tuple[int, int], limits: RegistrationLimits
) -> Registration:
    """Refuse an alignment that is more than a re-placed frame after its quarter turn (shift, scale,
    turn beyond ``limits``, and for features the residual), with the reasons. Shift and residual are
    read against the fixed frame's side, the scale against the frames' sizes: quadrat units, so
    surveys warped at different sizes compare as the same quadrat."""
    fh, fw = fixed_shape_hw
    side = min(fw, fh)
    problems = []
    if result.shift_px > limits.max_shift * side:
        problems.append(
            f"the centre moves {result.shift_px:.0f} px ({result.shift_px / side:.0%} of the side; "
            f"limit {limits.max_shift:.0%})"
        )
    if not 1 / limits.max_scale <= result.scale <= limits.max_scale:
        problems.append(f"scale {result.scale:.2f} (limit {limits.max_scale})")
    if abs(result.angle_deg) > limits.max_angle_deg:
        problems.append(
            f"a turn of {result.angle_deg:.0f} degrees beyond {result.turn_deg} "
            f"(limit {limits.max_angle_deg:.0f})"
        )
    # the features' residual is the alignment's own; the intensity tiles' shifts also hold what the reef
    # did between the years (growth, new colonies), so there the correlation is the check
    features = result.method == "features"
    if features and result.residual_px > limits.max_residual_px * side / 1024:
        problems.append(f"median residual {result.residual_px:.1f} px")
    if problems:
        result.ok = False
        result.homography = None
        result.reason = (
            "the alignment is more than a re-placed frame (" + "; ".join(problems) + "): different quadrats "
            "paired by mistake, or a warp gone wrong in one survey"
        )
    return result


def register_masks(
    fixed_hw: np.ndarray, moving_hw: np.ndarray, iterations: int = 200, blur_px: float = 0.0
) -> Registration:
    """Align two maps from their colonies alone (bool (H, W) unions of the colony masks, same size):
    ECC with a Euclidean motion on the blurred masks. The residual is the mean distance (px) between
    the two outlines after alignment.

    Returns:
        A :class:`Registration` (homography moving px -> fixed px), refused when ECC does not converge.
    """
    h, w = fixed_hw.shape
    sigma = blur_px or max(2.0, 0.01 * max(h, w))
    f = cv2.GaussianBlur(fixed_hw.astype(np.float32), (0, 0), sigma)
    m = cv2.GaussianBlur(moving_hw.astype(np.float32), (0, 0), sigma)
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-6)
    try:
        _, warp = cv2.findTransformECC(f, m, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 5)
    except cv2.error as error:
        return Registration(
            False, f"the colony outlines could not be aligned (ECC: {str(error).strip()[:80]})"
        )
    # ECC's warp maps fixed (template) pixel centres to moving ones; invert to moving -> fixed
    centre_h = np.vstack([warp.astype(np.float64), [0, 0, 1]])
    to_corner = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    homography = to_corner @ np.linalg.inv(centre_h) @ np.linalg.inv(to_corner)
    from quadratseg.warp import warp_image

    aligned = warp_image(moving_hw.astype(np.uint8), homography, (w, h), interpolation=cv2.INTER_NEAREST) > 0
    residual = _outline_distance(fixed_hw, aligned)
    turn, shift, scale, angle = decompose(homography, (w, h))
    return Registration(True, "", homography, turn, residual, 0, 0, shift, scale, angle)


def _outline_distance(a_hw: np.ndarray, b_hw: np.ndarray) -> float:
    """Mean distance (px) from the outline pixels of ``a_hw`` to the nearest outline pixel of ``b_hw``."""
    edge_a = cv2.morphologyEx(a_hw.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    edge_b = cv2.morphologyEx(b_hw.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    if not edge_a.any() or not edge_b.any():
        return float("nan")
    distance = cv2.distanceTransform((~edge_b).astype(np.uint8), cv2.DIST_L2, 3)
    return float(distance[edge_a].mean())
