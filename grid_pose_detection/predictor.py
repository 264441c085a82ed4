"""Pose predictions put in template order: the function the CLI, the evaluation and the Nuclio handler share.

1. Raw keypoints of every detected object with a keypoint confidence above ``kpt_conf`` form an
   unordered set of detections (one per object in the ``points`` layout, K per object in the
   ``instance`` layout: the same code reads both).
2. Hungarian matching against the task's template (isotropic costs, ``max_cost`` as upstream)
   puts them in template order. Missing points stay missing (NaN), extra detections are dropped.
3. Sub-pixel refinement on the image evidence (:mod:`quadratseg.keypoint_refine`, ``refine=True``): the
   corners move to the frame's inner corners, grid points to their string crossings. For the
   grid, points the model missed are proposed by the homography of the matched ones and kept only
   where a string crossing confirms them (flagged ``filled``). A point that does not refine keeps
   the model's position (``refined`` False).
4. Grid: fewer than ``MIN_GRID_SHARE`` of the intersections matched means "no grid" (a quadrat
   photographed without one, as in two-stage surveys): no point is returned and ``no_grid``
   says why. Corners: the perspective warp of the quadrat, built from the corners the prediction
   reports (the refined ones when refinement is on), refused with a reason when fewer than 4
   corners were found, they are degenerate, or (refinement on) fewer than ``MIN_FRAME_SIDES`` of the
   quadrat's sides lie on a straight edge of the photo or one side has less than ``MIN_WEAKEST_SIDE``
   of the evidence: no frame rather than a wrong warp.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from grid_pose_detection.tasks import PoseTask
from quadratseg.errors import DegenerateQuadrilateralError, QuadratsegError
from quadratseg.keypoint_refine import refine_grid_crossings, refine_quadrat_corners
from quadratseg.keypoints import (
    CORNER_NAMES,
    GRID_COLS,
    GRID_ROWS,
    TemplateMatch,
    load_template,
    long_side_first,
    match_to_template,
    point_spacing_px,
    quadrat_side_px,
    validate_template,
)
from quadratseg.model_card import model_card_path, read_model_card
from quadratseg.warp import DEFAULT_WARP_SIZE, quadrat_homography, transform_points, warp_image, warped_size

MIN_GRID_SHARE = 0.25  # fewer matched intersections than this share: the photo has no grid
STRING_WIDTH_SHARE = 0.07  # expected string width as a share of the grid spacing
DEFAULT_CONF = 0.25  # box confidence when neither the caller nor the model's card gives one
DEFAULT_KPT_CONF = 0.5  # keypoint confidence, likewise
MIN_FRAME_SIDES = 3  # corners: sides that must lie on a straight edge of the photo for a warp
MIN_SIDE_EVIDENCE = 0.4  # corners: a side lies on a straight edge when this share of its pieces do
MIN_WEAKEST_SIDE = 0.2  # corners: and no side's evidence below this (a wrong quadrat has one off the frame)
SIDE_NAMES = ("top", "right", "bottom", "left")


@dataclass
class PosePrediction:
    """Keypoints of one image in template order (pixels, NaN if missing) and how they were found."""

    keypoints_xy: np.ndarray
    scores: np.ndarray  # (K,) keypoint confidence, 0 where missing
    match: TemplateMatch
    n_raw: int
    frame_size: tuple[int, int]
    homography: np.ndarray | None = None  # image -> warped (corners task)
    warp_error: str = ""  # why no warp was made
    no_grid: str = ""  # grid task: why the photo is taken to have no grid ("" when it has one)
    refined: np.ndarray | None = None  # (K,) bool: moved to image evidence (None: refinement off)
    refine_confidence: np.ndarray | None = None  # (K,) 0..1
    filled: np.ndarray | None = None  # (K,) bool: missed by the model, proposed and confirmed
    side_straightness: np.ndarray | None = None  # corners, refined: (4,) top, right, bottom, left
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def visible(self) -> np.ndarray:
        """(K,) bool: the point was found."""
        return np.isfinite(self.keypoints_xy).all(axis=1)

    @property
    def no_frame(self) -> str:
        """Corners: why the four corners found are no quadrat (the frame check, or a degenerate
        quadrilateral), "" otherwise. Such corners are delivered nowhere (:attr:`delivered_xy`): no
        label, no annotation, no shape, never a confident wrong quadrat."""
        return self.warp_error if self.warp_error and self.visible.all() else ""

    @property
    def delivered_xy(self) -> np.ndarray:
        """(K, 2) the keypoints as they go out (labels, annotations, shapes): all NaN where
        :attr:`no_frame` refused them, else :attr:`keypoints_xy`."""
        return np.full_like(self.keypoints_xy, np.nan) if self.no_frame else self.keypoints_xy


def raw_keypoints(result: Any, kpt_conf: float) -> tuple[np.ndarray, np.ndarray]:
    """All keypoints of an ultralytics result whose confidence reaches ``kpt_conf``: (M, 2) px, (M,)."""
    kps = getattr(result, "keypoints", None)
    if kps is None or kps.xy is None or len(kps.xy) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    xy = kps.xy.cpu().numpy().reshape(-1, 2)
    conf = kps.conf.cpu().numpy().reshape(-1) if kps.conf is not None else np.ones(len(xy))
    keep = (conf >= kpt_conf) & np.isfinite(xy).all(axis=1) & (xy > 0).any(axis=1)
    return xy[keep], conf[keep]


def order_keypoints(
    detections_xy: np.ndarray,
    scores: np.ndarray,
    template_xy: np.ndarray,
    max_cost: float,
    frame_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, TemplateMatch]:
    """Detections (M, 2) px -> template order (K, 2) px with NaN for missing, and their scores."""
    match = match_to_template(detections_xy, template_xy, max_cost, frame_size=frame_size)
    ordered_scores = np.zeros(len(template_xy))
    found = match.detection_index >= 0
    ordered_scores[found] = scores[match.detection_index[found]]
    return match.keypoints_xy, ordered_scores, match


def homography_filled_grid(keypoints_xy: np.ndarray, template_xy: np.ndarray) -> np.ndarray | None:
    """Every template point (K, 2) px through the homography fitted (RANSAC) on the found ones.

    None with fewer than 8 found points or no fit; found points keep their own positions.
    """
    import cv2

    found = np.isfinite(keypoints_xy).all(axis=1)
    if found.sum() < 8:
        return None
    spacing = point_spacing_px(keypoints_xy)
    h, _ = cv2.findHomography(
        template_xy[found].astype(np.float64), keypoints_xy[found].astype(np.float64), cv2.RANSAC, spacing / 4
    )
    if h is None or not np.isfinite(h).all():
        return None
    out = transform_points(template_xy, h)
    out[found] = keypoints_xy[found]
    return out


def refine_prediction(
    image_rgb: np.ndarray, prediction: PosePrediction, task: PoseTask, template_xy: np.ndarray
) -> None:
    """Move the prediction's points to the image evidence, in place (see the module docstring);
    ``template_xy`` (K, 2) proposes the grid points the model missed."""
    kp = prediction.keypoints_xy
    k = len(kp)
    prediction.refined = np.zeros(k, dtype=bool)
    prediction.refine_confidence = np.zeros(k)
    prediction.filled = np.zeros(k, dtype=bool)
    found = np.isfinite(kp).all(axis=1)
    if task.name == "gridcorners":
        if not found.all():
            return
        side = quadrat_side_px(kp, found, template_xy)
        if side is None:  # degenerate corners: nothing to search along
            return
        result = refine_quadrat_corners(image_rgb, kp, radius_px=max(4.0, task.refine_radius_share * side))
    else:
        if k != GRID_ROWS * GRID_COLS or found.sum() < 8:
            return
        proposed = homography_filled_grid(kp, template_xy)
        candidates = kp if proposed is None else proposed
        spacing = point_spacing_px(kp)
        result = refine_grid_crossings(
            image_rgb,
            candidates,
            radius_px=task.refine_radius_share * spacing,
            string_width_px=max(2.0, STRING_WIDTH_SHARE * spacing),
            grid_shape=(GRID_ROWS, GRID_COLS),
        )
        filled = ~found & result.refined
        prediction.filled = filled
        prediction.scores = np.where(filled, result.confidence, prediction.scores)
        keep = found | filled
        result.points_xy[~keep] = np.nan
    prediction.keypoints_xy = result.points_xy
    prediction.refined = result.refined
    prediction.refine_confidence = result.confidence
    prediction.side_straightness = result.side_straightness


@dataclass(frozen=True)
class FrameCheck:
    """The rule by which refined corners show a frame: ``sides`` of the 4 sides with at least
    ``evidence`` (their ``side_straightness``) and none under ``weakest``. A corner model's card states
    the rule its figures were measured with (``frame_check``, :func:`pose_settings`)."""

    sides: int = MIN_FRAME_SIDES
    evidence: float = MIN_SIDE_EVIDENCE
    weakest: float = MIN_WEAKEST_SIDE

    @classmethod
    def from_card(cls, stated: Any, where: str) -> FrameCheck:
        """The rule a card's ``frame_check`` states (``sides_needed``, ``side_evidence``,
        ``weakest_side``; one left out is the default's).

        Raises:
            QuadratsegError: a value that is no rule (sides not 1..4, shares not in 0..1); ``where``
                names the card.
        """
        if not isinstance(stated, dict):
            raise QuadratsegError(f"{where}: frame_check must be an object, got {stated!r}")
        try:
            check = cls(
                int(stated.get("sides_needed", cls.sides)),
                float(stated.get("side_evidence", cls.evidence)),
                float(stated.get("weakest_side", cls.weakest)),
            )
        except (TypeError, ValueError) as exc:
            raise QuadratsegError(
                f"{where}: frame_check holds a value that is not a number ({exc})"
            ) from None
        if not (1 <= check.sides <= 4 and 0 <= check.evidence <= 1 and 0 <= check.weakest <= 1):
            raise QuadratsegError(
                f"{where}: frame_check {stated} is no rule (sides_needed 1 to 4, side_evidence and "
                "weakest_side shares from 0 to 1); fix the card"
            )
        return check

    def confirmed(self, straight: np.ndarray) -> bool:
        """The rule on a quadrat's (4,) side evidence (top, right, bottom, left); the benchmark
        (:mod:`benchmarks.bench_grid`) sweeps it."""
        return bool((straight >= self.evidence).sum() >= self.sides and straight.min() >= self.weakest)

    def statement(self) -> dict[str, Any]:
        """The rule as a model card states it (read back by :meth:`from_card`)."""
        return {
            "sides_needed": self.sides,
            "side_evidence": self.evidence,
            "weakest_side": self.weakest,
            "rule": (
                f"no frame unless {self.sides} of the 4 sides have at least {self.evidence:.0%} of their "
                f"pieces on one straight edge (and a bar's coherence along the side) and none has under "
                f"{self.weakest:.0%}"
            ),
        }


DEFAULT_FRAME_CHECK = FrameCheck()


def corner_warp(
    prediction: PosePrediction, output_size: tuple[int, int], check: FrameCheck = DEFAULT_FRAME_CHECK
) -> tuple[np.ndarray | None, str]:
    """(homography image -> warped of ``output_size=(w, h)``, "") from the corners the prediction
    reports (refined when refinement ran), or (None, why not).

    Refused when a corner is missing or the four are degenerate, and, after refinement, when the
    frame ``check`` fails: fewer than ``check.sides`` sides of the quadrat lie on a straight edge of
    the photo (``check.evidence`` of their pieces on one line), or one side's evidence (its
    ``side_straightness``) is below ``check.weakest`` (the model put the corners where the photo
    shows no frame).
    """
    straight = prediction.side_straightness
    if straight is not None and not check.confirmed(straight):
        seen = straight >= check.evidence
        weakest = int(np.argmin(straight))
        sides = ", ".join(n for n, ok in zip(SIDE_NAMES, seen, strict=True) if ok) or "none"
        return None, (
            f"corners {', '.join(CORNER_NAMES)} not confirmed by the frame: {int(seen.sum())} of 4 sides "
            f"({sides}) lie on a straight edge of the photo, {check.sides} needed, and every side at "
            f"least {check.weakest:.0%} of the way (the {SIDE_NAMES[weakest]} side: "
            f"{straight[weakest]:.0%}); no warp (--no-refine warps with the model's corners as they are)"
        )
    try:
        return quadrat_homography(prediction.keypoints_xy, output_size), ""
    except DegenerateQuadrilateralError as exc:
        return None, str(exc)


@dataclass(frozen=True)
class PoseSettings:
    """What a pose model is run with, each value from the caller, else the model's card, else the
    documented default; ``sources`` says which (``given``, ``card``, ``default``) per name."""

    conf: float
    kpt_conf: float
    max_cost: float
    warp_size: tuple[int, int]  # (width, height) of the warped quadrat
    template_xy: np.ndarray  # (K, 2) normalized quadrat coordinates
    sources: dict[str, str]
    frame_check: FrameCheck = DEFAULT_FRAME_CHECK  # corners: the card's rule, else the default


def pose_settings(
    weights: str | Path,
    task: PoseTask,
    template_xy: np.ndarray | None = None,
    conf: float | None = None,
    kpt_conf: float | None = None,
    max_cost: float | None = None,
    warp_size: int | tuple[int, int] | None = None,
    aspect: float = 1.0,
    allow_warp_size_mismatch: bool = False,
) -> PoseSettings:
    """Resolve a pose model's settings: every ``None`` is taken from the card beside ``weights``
    (:mod:`quadratseg.model_card`), else the default (``DEFAULT_CONF``, ``DEFAULT_KPT_CONF``, the
    task's ``max_cost`` and template, ``DEFAULT_WARP_SIZE`` wide at ``aspect`` = width / height); the
    frame check is the card's ``frame_check`` (the rule its figures were measured with), else
    :data:`DEFAULT_FRAME_CHECK`.

    Raises:
        QuadratsegError: the card is of another task; its template file is missing or of the wrong
            shape; a ``warp_size`` given disagrees with the card's (the side of the warped quadrats the
            model was trained on, or is meant to produce) unless ``allow_warp_size_mismatch``.

    Examples:
        >>> from grid_pose_detection.tasks import get_task
        >>> s = pose_settings("no/card/best.pt", get_task("gridpose"))
        >>> s.conf, s.warp_size, s.sources["conf"]
        (0.25, (1920, 1920), 'default')
    """
    card = read_model_card(weights)
    if card.get("task") not in (None, task.name):
        raise QuadratsegError(
            f"{weights} is a {card['task']} model (its card {model_card_path(weights)}), not {task.name}; "
            "give the weights of the right task"
        )
    sources: dict[str, str] = {}

    def pick(name: str, given: Any, default: Any) -> Any:
        if given is not None:
            sources[name] = "given"
            return given
        if card.get(name) is not None:
            sources[name] = "card"
            return card[name]
        sources[name] = "default"
        return default

    card_side = card.get("warp_size")
    if warp_size is not None:
        size = (int(warp_size), round(int(warp_size) / aspect)) if np.isscalar(warp_size) else warp_size
        size = tuple(int(v) for v in size)
        if card_side is not None and int(card_side) != size[0] and not allow_warp_size_mismatch:
            raise QuadratsegError(
                f"--warp-size {size[0]} disagrees with the {task.name} model's card "
                f"({model_card_path(weights)}: warp_size {card_side} px, the warped quadrats it was trained "
                "on or is meant to produce); "
                f"leave --warp-size out to use {card_side}, or pass --allow-warp-size-mismatch"
            )
        sources["warp_size"] = "given"
    else:
        side = int(pick("warp_size", None, DEFAULT_WARP_SIZE))
        size = warped_size(side, aspect)
    if template_xy is not None:
        template, sources["template"] = validate_template(template_xy, task.n_points), "given"
    elif card.get("template"):
        path = Path(weights).parent / str(card["template"])
        if not path.is_file():
            raise QuadratsegError(
                f"the card {model_card_path(weights)} names the template {card['template']}, but {path} does "
                "not exist; copy the template beside the weights or give --template"
            )
        template, sources["template"] = load_template(path, task.n_points), "card"
    else:
        template, sources["template"] = validate_template(task.template(), task.n_points), "default"
    if card.get("frame_check") is not None:
        check, sources["frame_check"] = (
            FrameCheck.from_card(card["frame_check"], str(model_card_path(weights))),
            "card",
        )
    else:
        check, sources["frame_check"] = DEFAULT_FRAME_CHECK, "default"
    return PoseSettings(
        frame_check=check,
        conf=float(pick("conf", conf, DEFAULT_CONF)),
        kpt_conf=float(pick("kpt_conf", kpt_conf, DEFAULT_KPT_CONF)),
        max_cost=float(pick("max_cost", max_cost, task.max_cost)),
        warp_size=size,
        template_xy=template,
        sources=sources,
    )


class PosePredictor:
    """A trained YOLO-pose model for one task, with its template and thresholds.

    Every threshold, the template and the warp size left ``None`` come from the model's card
    (:func:`pose_settings`); ``refine`` (default on) moves points to the image evidence;
    ``predict(..., refine=False)`` shows the model's own positions (the ablation of
    ``benchmarks/bench_grid.py``).
    """

    def __init__(
        self,
        weights: str | Path,
        task: PoseTask,
        template_xy: np.ndarray | None = None,
        conf: float | None = None,
        kpt_conf: float | None = None,
        imgsz: int | None = None,
        device: str = "auto",
        warp_size: int | tuple[int, int] | None = None,
        refine: bool = True,
        max_det: int = 300,
        max_cost: float | None = None,
        aspect: float = 1.0,
        allow_warp_size_mismatch: bool = False,
    ):
        from quadratseg.yolo_train import build_model

        self.settings = pose_settings(
            weights, task, template_xy, conf, kpt_conf, max_cost, warp_size, aspect, allow_warp_size_mismatch
        )
        self.model = build_model(weights)
        self.weights = str(weights)
        self.task = task
        self.template = self.settings.template_xy
        self.conf, self.kpt_conf, self.max_cost = (
            self.settings.conf,
            self.settings.kpt_conf,
            self.settings.max_cost,
        )
        self.imgsz = imgsz or int(self.model.overrides.get("imgsz", 640) or 640)
        self.device = None if device == "auto" else device
        self.warp_size = self.settings.warp_size
        self.refine = refine
        self.max_det = max(max_det, 3 * task.n_points)  # the points layout: one object per point

    def predict(
        self, images_rgb: list[np.ndarray], kpt_conf: float | None = None, refine: bool | None = None
    ) -> list[PosePrediction]:
        """Predictions for uint8 RGB images (H, W, 3) (grey and RGBA arrays are read as RGB,
        :func:`quadratseg.images.as_rgb_uint8`); ``kpt_conf`` (a served request's ``threshold``) and
        ``refine`` override the predictor's for this call only.

        Raises:
            ValueError: an array of another shape or sample type.
        """
        from quadratseg.images import as_rgb_uint8

        kpt_conf = self.kpt_conf if kpt_conf is None else kpt_conf
        refine = self.refine if refine is None else refine
        images_rgb = [as_rgb_uint8(img, f"image {i}") for i, img in enumerate(images_rgb)]
        bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images_rgb]  # ultralytics takes BGR arrays
        results = self.model.predict(
            bgr, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False, max_det=self.max_det
        )
        out = []
        for image, result in zip(images_rgb, results, strict=True):
            size = (image.shape[1], image.shape[0])
            det, scores = raw_keypoints(result, kpt_conf)
            ordered, ordered_scores, match = order_keypoints(det, scores, self.template, self.max_cost, size)
            if self.task.name == "gridcorners":  # a rectangular quadrat: its long side where the warp's is
                turn = long_side_first(ordered, self.warp_size[0] / self.warp_size[1])
                ordered, ordered_scores = ordered[turn], ordered_scores[turn]
                match = replace(
                    match,
                    keypoints_xy=match.keypoints_xy[turn],
                    detection_index=match.detection_index[turn],
                    cost=match.cost[turn],
                )
            prediction = PosePrediction(ordered, ordered_scores, match, len(det), size)
            if refine:
                refine_prediction(image, prediction, self.task, self.template)
            if self.task.name == "gridpose":
                prediction.no_grid = no_grid_reason(prediction)
                if prediction.no_grid:
                    prediction.keypoints_xy = np.full_like(prediction.keypoints_xy, np.nan)
                    prediction.scores = np.zeros_like(prediction.scores)
            if self.task.name == "gridcorners":
                prediction.homography, prediction.warp_error = corner_warp(
                    prediction, self.warp_size, self.settings.frame_check
                )
            out.append(prediction)
        return out

    def warp(self, image_rgb: np.ndarray, prediction: PosePrediction) -> np.ndarray | None:
        """The rectified quadrat of a corners prediction (None when it could not be warped)."""
        if prediction.homography is None:
            return None
        return warp_image(image_rgb, prediction.homography, self.warp_size)


def no_grid_reason(prediction: PosePrediction) -> str:
    """Why a grid prediction is taken as "no grid" ("" when enough intersections were matched)."""
    k = len(prediction.keypoints_xy)
    found = int(prediction.visible.sum())
    if found >= MIN_GRID_SHARE * k:
        return ""
    return (
        f"no grid: {found} of {k} intersections found ({prediction.n_raw} detections), fewer than "
        f"{MIN_GRID_SHARE:.0%}; grid removal is skipped for this photo"
    )


def skeleton_shape(prediction: PosePrediction, task: PoseTask) -> dict[str, Any]:
    """The CVAT detector answer for one prediction: one skeleton, elements in template order.

    Missing points get ``outside: 1`` (CVAT keeps them hidden); confidences are integer strings.
    """
    spec = task.cvat_labels()[0]
    elements = []
    for i, sub in enumerate(spec.sublabels):
        found = bool(np.isfinite(prediction.keypoints_xy[i]).all())
        x, y = prediction.keypoints_xy[i] if found else (0.0, 0.0)
        elements.append(
            {
                "label": sub.name,
                "type": "points",
                "points": [float(x), float(y)],
                "outside": 0 if found else 1,
                "confidence": str(round(100 * float(prediction.scores[i]))),
            }
        )
    found_scores = prediction.scores[prediction.visible]
    confidence = str(round(100 * float(found_scores.mean()))) if len(found_scores) else "0"
    return {
        "label": spec.name,
        "type": "skeleton",
        "confidence": confidence,
        "attributes": [{"name": "confidence", "value": confidence}],
        "elements": elements,
    }
