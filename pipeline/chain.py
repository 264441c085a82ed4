"""The chain for one photo: corners -> warp -> grid -> grid removal -> segmentation -> cover.

Every stage is one of the predictor objects the Nuclio functions serve, called in process:
:class:`grid_pose_detection.predictor.PosePredictor` (corners and grid),
:func:`grid_inpainting.inpaint.remove_grid` with a backend, and either
:class:`coral_seg_yolo.predictor.SegPredictor` (colonies; cover with the instance interval) or
:class:`DINOv2_mmseg.predictor.SemanticSegmenter` (a class map; cover with the block interval), or
both, fused. Each segmentation mode (:data:`SEGMENTATION_MODES`: ``instances``, ``semantic``,
``pixel-ensemble``, ``nms``) is one small function that segments and computes the cover with its
own units and interval terms (:mod:`quadratseg.cover`; the terms of :attr:`ChainModels.calibration`).
Variants, by which models are given:

- three-stage: corners, grid, removal and segmentation;
- two-stage (no grid model): corners -> warp -> segmentation;
- single-stage (no corner model): the photos are already warped quadrats.

A stage that finds nothing records its reason and the chain goes on where it can: a photo with
no grid skips removal; a photo whose frame is not found stops there (cover needs the quadrat).

The stages (:data:`CHAIN_STAGES`: corners, grid, removal, segmentation) are functions that advance
a :class:`PhotoResult`: :func:`run_chain` runs them in turn on one photo; the Ray engine runs each
in its own pool of workers (:mod:`pipeline.engine_ray`), with the same functions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from quadratseg.cover import (
    TERMS_TWICE,
    VOTE_METHOD,
    CoverCalibration,
    CoverEstimate,
    boundary_length_px,
    instance_cover,
    reapplied,
    semantic_cover,
    visible_areas,
)
from quadratseg.ensemble import fuse_scores, instance_score_maps, nms_instances
from quadratseg.instances import Instance, exclusive_instances


@dataclass
class ChainModels:
    """The stages' models; ``None`` leaves a stage out (see the module docstring)."""

    segment: Any  # SegPredictor (colonies), or None with ``semantic``
    corners: Any = None  # PosePredictor of gridcorners
    grid: Any = None  # PosePredictor of gridpose
    inpaint: Any = None  # an inpainting backend (grid_inpainting.inpaint.select_backend)
    include_inpainted: bool = False  # count the pixels under the grid mask in the cover
    boundary_px: float = 0.0  # outline term of uncalibrated cover intervals (quadratseg.cover)
    miss_pp: float = 0.0  # upper bound of uncalibrated intervals of a class not seen on the photo
    calibration: CoverCalibration | None = None  # fitted interval terms (replace the two above)
    semantic: Any = None  # SemanticSegmenter: cover from its class map instead of colonies
    ensemble: str = ""  # with both models: weighted, voting or nms (quadratseg.ensemble)
    ensemble_weight: float = 0.5  # the colonies' weight of the weighted ensemble
    nms_iou: float = 0.5  # the nms ensemble's IoU at which a less confident colony is dropped
    # taxonomy level of the classes the cover reports, as the model's card declares it ("": the
    # finest level that holds them; pipeline.run.check_model_classes)
    level: str = ""

    def cover_calibration(self, scores_are_probabilities: bool = True) -> CoverCalibration:
        """The fitted interval terms, or the uncalibrated ones of ``boundary_px`` and ``miss_pp``."""
        if self.calibration is not None:
            if self.boundary_px or self.miss_pp:
                raise ValueError(TERMS_TWICE)
            return self.calibration
        return CoverCalibration.uncalibrated(self.boundary_px, self.miss_pp, scores_are_probabilities)

    def table_estimates(self, estimates: list[CoverEstimate]) -> list[CoverEstimate]:
        """A photo record's cover estimates under these models' terms (:func:`quadratseg.cover.reapplied`,
        the vote shares of the voting ensemble without a confidence term as the chain makes them): the
        terms are table options, so a run with new terms rebuilds its tables from the photo records
        without running a model again."""
        return [reapplied(e, self.cover_calibration(not e.method.startswith(VOTE_METHOD))) for e in estimates]

    def interval_terms(self) -> dict[str, Any]:
        """What made the tables' intervals, for the run's ``run.json`` and summary (the terms are table
        options, in no fingerprint): the fitted terms' level, units and the SHA-256 of their JSON, or
        the uncalibrated terms given."""
        if self.calibration is None:
            return {"fitted": False, "boundary_px": self.boundary_px, "miss_pp": self.miss_pp}
        text = json.dumps(asdict(self.calibration), sort_keys=True)
        return {
            "fitted": self.calibration.fitted,
            "level": self.calibration.level,
            "method": self.calibration.method,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }

    @property
    def variant(self) -> str:
        """three-stage, two-stage or single-stage."""
        if self.corners is None:
            return "single-stage"
        return "three-stage" if self.grid is not None else "two-stage"


@dataclass
class PhotoResult:
    """What the chain made of one photo (images in the warped frame unless named raw)."""

    status: dict[str, str] = field(default_factory=dict)  # stage -> "ok", "skipped: ...", "stopped: ..."
    raw: np.ndarray | None = None  # (H, W, 3) the photo, until the corners stage has warped it
    warped: np.ndarray | None = None
    clean: np.ndarray | None = None
    homography: np.ndarray | None = None  # raw -> warped
    corners_xy: np.ndarray | None = None  # (4, 2) raw px
    grid_xy: np.ndarray | None = None  # (117, 2) warped px
    grid_mask: np.ndarray | None = None  # (H, W) bool, pixels invented by inpainting
    instances: list[Instance] = field(default_factory=list)
    class_map: np.ndarray | None = None  # (H, W) uint8 class indices (semantic segmentation)
    observed_hw: np.ndarray | None = None  # (H, W) bool, pixels the cover counts
    cover: list[CoverEstimate] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when the photo reached a cover."""
        return bool(self.cover) or self.status.get("cover") == "ok"

    @property
    def observed_share(self) -> float:
        """Share of the quadrat's pixels that were seen (not invented by inpainting)."""
        return float(self.observed_hw.mean()) if self.observed_hw is not None else float("nan")


def reef_colonies(instances: list[Instance], frame_size: tuple[int, int]) -> list[Instance]:
    """The colonies as one map of the reef, a pixel to one colony
    (:func:`quadratseg.instances.exclusive_instances`): a colony answered twice with two genera keeps the
    surer answer, a low-score outline around surer colonies that keeps under half its pixels is left
    out, and each colony kept is cut to its own pixels, so that the cover, ``colonies.csv``, the
    instances file and tracking count every pixel once."""
    return [colony for _, colony in exclusive_instances(instances, frame_size)]


def cover_of_instances(
    instances: list[Instance],
    frame_size: tuple[int, int],
    observed_hw: np.ndarray,
    classes: list[str],
    calibration: CoverCalibration,
) -> list[CoverEstimate]:
    """Cover per class over the observed pixels; overlaps go to the more confident colony."""
    ordered = sorted(instances, key=lambda inst: inst.score)
    areas = visible_areas([(inst.box_mask, inst.origin_xy) for inst in ordered], frame_size, observed_hw)
    return instance_cover(
        [inst.label for inst in ordered],
        [inst.score for inst in ordered],
        areas.tolist(),
        int(observed_hw.sum()),
        classes,
        perimeters_px=[boundary_length_px(inst.box_mask) for inst in ordered],
        calibration=calibration,
    )


def to_semantic_labels(instances: list[Instance], classes: list[str]) -> list[Instance]:
    """The colonies relabelled to the semantic model's classes (background first): a label finer
    than those classes is mapped up the taxonomy; a label with no class there is an error."""
    from dataclasses import replace

    from quadratseg.taxonomy import LEVELS, load_taxonomy

    taxonomy = load_taxonomy()
    level = next((lv for lv in LEVELS if set(classes[1:]) <= set(taxonomy.classes(lv))), None)
    out = []
    for inst in instances:
        label = (
            inst.label if inst.label in classes or level is None else taxonomy.map_label(inst.label, level)
        )
        if label not in classes[1:]:
            raise ValueError(f"colony label {inst.label!r} has no class among the semantic model's {classes}")
        out.append(inst if label == inst.label else replace(inst, label=label))
    return out


def fused_scores(instances: list[Instance], probs_chw: np.ndarray, models: ChainModels) -> np.ndarray:
    """The colonies and the class probabilities fused per pixel (C, H, W) over the semantic model's
    classes (:func:`to_semantic_labels`)."""
    classes = list(models.semantic.classes)
    index = {name: k for k, name in enumerate(classes)}
    colonies = [
        (index[inst.label], inst.score, inst.box_mask, inst.origin_xy)
        for inst in to_semantic_labels(instances, classes)
    ]
    height, width = probs_chw.shape[1:]
    scores = instance_score_maps(colonies, len(classes), (width, height))
    return fuse_scores(scores, probs_chw, models.ensemble, models.ensemble_weight)


def nms_colonies(
    image_rgb: np.ndarray, instances: list[Instance], probs_chw: np.ndarray, models: ChainModels
) -> tuple[list[Instance], int]:
    """The instance ensemble: the semantic model's regions (DINOv2_mmseg's refinement without SAM,
    score = the region's mean class probability) pooled with the colonies and suppressed by mask IoU
    (:func:`quadratseg.ensemble.nms_instances`). Returns (colonies, number of semantic regions)."""
    from DINOv2_mmseg.sam_refine import refine_instances

    classes = list(models.semantic.classes)
    regions = refine_instances(image_rgb, probs_chw, classes)
    pooled = to_semantic_labels(instances, classes) + regions
    return nms_instances(pooled, models.nms_iou), len(regions)


def colony_count(kept: list[Instance], answers: list[Instance]) -> str:
    """ "N colonies", and how many overlapping answers :func:`reef_colonies` left out."""
    left = len(answers) - len(kept)
    return f"{len(kept)} colonies" + (f"; {left} overlapping answers left out" if left else "")


@dataclass
class Segmentation:
    """What a segmentation mode made of the clean quadrat (warped frame)."""

    instances: list[Instance]
    class_map: np.ndarray | None  # (H, W) uint8 class indices, for the modes with a class map
    cover: list[CoverEstimate]
    status: str


def cover_method(models: ChainModels) -> str:
    """The units of the chain's cover estimates (``CoverEstimate.method`` without its suffixes):
    colonies for YOLO and ``nms``, class-map blocks for MMSeg and ``weighted``, vote-share blocks
    for ``voting``."""
    from quadratseg.cover import INSTANCE_METHOD, SEMANTIC_METHOD, VOTE_METHOD

    if models.semantic is None:
        return INSTANCE_METHOD
    if models.segment is None:
        return SEMANTIC_METHOD
    return {"voting": VOTE_METHOD, "nms": INSTANCE_METHOD}.get(models.ensemble, SEMANTIC_METHOD)


def segment_instances(clean: np.ndarray, models: ChainModels, observed: np.ndarray) -> Segmentation:
    """``instances`` (YOLO colonies): units are colonies with their confidences; every class of the
    model gets a row."""
    answers = models.segment.predict(clean)
    height, width = clean.shape[:2]
    instances = reef_colonies(answers, (width, height))
    cover = cover_of_instances(
        instances, (width, height), observed, cover_classes(models), models.cover_calibration()
    )
    return Segmentation(instances, None, cover, f"ok ({colony_count(instances, answers)})")


def segment_semantic(clean: np.ndarray, models: ChainModels, observed: np.ndarray) -> Segmentation:
    """``semantic`` (an MMSeg class map): units are a class's pixels per block with their mean
    softmax probability."""
    probs = models.semantic.predict_probs(clean)
    cover = semantic_cover(probs, models.semantic.classes, observed, calibration=models.cover_calibration())
    return Segmentation(
        [],
        probs.argmax(axis=0).astype(np.uint8),
        cover,
        f"ok (class map, {len(models.semantic.classes)} classes)",
    )


def segment_pixel_ensemble(clean: np.ndarray, models: ChainModels, observed: np.ndarray) -> Segmentation:
    """``pixel-ensemble`` (``weighted`` or ``voting``): the colonies and class probabilities fused per
    pixel (:func:`fused_scores`); units as for ``semantic`` on the fused scores, the colonies reported
    with the class map's labels (:func:`to_semantic_labels`). ``voting``'s scores
    are vote shares, not probabilities: without a fit its confidence term is left out."""
    probs = models.semantic.predict_probs(clean)
    answers = to_semantic_labels(models.segment.predict(clean), list(models.semantic.classes))
    instances = reef_colonies(answers, (clean.shape[1], clean.shape[0]))
    fused = fused_scores(instances, probs, models)
    probabilities = models.ensemble != "voting"
    cover = semantic_cover(
        fused,
        models.semantic.classes,
        observed,
        calibration=models.cover_calibration(probabilities),
        scores_are_probabilities=probabilities,
    )
    return Segmentation(
        instances,
        fused.argmax(axis=0).astype(np.uint8),
        cover,
        f"ok ({models.ensemble} ensemble of {colony_count(instances, answers)} and a class map)",
    )


def segment_nms(clean: np.ndarray, models: ChainModels, observed: np.ndarray) -> Segmentation:
    """``nms``: both models' colonies pooled by mask NMS (:func:`nms_colonies`); units are the kept
    colonies, as for ``instances``, over the semantic model's classes."""
    probs = models.semantic.predict_probs(clean)
    colonies = models.segment.predict(clean)
    pooled, regions = nms_colonies(clean, colonies, probs, models)
    height, width = clean.shape[:2]
    kept = reef_colonies(pooled, (width, height))
    cover = cover_of_instances(
        kept, (width, height), observed, cover_classes(models), models.cover_calibration()
    )
    status = (
        f"ok (nms ensemble: {len(colonies)} colonies + {regions} class-map regions -> "
        f"{colony_count(kept, pooled)})"
    )
    return Segmentation(kept, None, cover, status)


SEGMENTATION_MODES = {
    "instances": segment_instances,
    "semantic": segment_semantic,
    "pixel-ensemble": segment_pixel_ensemble,
    "nms": segment_nms,
}


def segmentation_mode(models: ChainModels) -> str:
    """The key of :data:`SEGMENTATION_MODES` the models ask for."""
    if models.segment is None and models.semantic is None:
        raise ValueError("no segmentation model: give a YOLO model (segment), a semantic model, or both")
    if models.segment is not None and models.semantic is not None and models.ensemble:
        return "nms" if models.ensemble == "nms" else "pixel-ensemble"
    return "semantic" if models.semantic is not None else "instances"


def cover_classes(models: ChainModels) -> list[str]:
    """The labels the cover of the models' segmentation mode reports, in order, known before any
    photo: the colony model's names for ``instances``; the class map's classes without its
    background for ``semantic`` and the ensembles, whose colonies take the class map's labels
    (:func:`to_semantic_labels`)."""
    if segmentation_mode(models) == "instances":
        return list(dict.fromkeys(models.segment.names.values()))
    return list(models.semantic.classes)[1:]


def stage_corners(result: PhotoResult, models: ChainModels) -> None:
    """Corners and warp: ``result.raw`` (H, W, 3 raw px) becomes ``result.warped`` (the quadrat), or
    the photo stops when no frame is found; without a corner model the photo is the quadrat."""
    image_rgb, result.raw = result.raw, None
    if models.corners is None:
        result.status["corners"] = "skipped: single-stage (the photo is the quadrat)"
        result.warped = image_rgb
        return
    (corners,) = models.corners.predict([image_rgb])
    result.corners_xy = corners.keypoints_xy
    if corners.homography is None:
        result.status["corners"] = f"stopped: no quadrat frame ({corners.warp_error or 'no corner found'})"
        return
    result.status["corners"] = "ok"
    result.homography = corners.homography
    result.warped = models.corners.warp(image_rgb, corners)


def stage_grid(result: PhotoResult, models: ChainModels) -> None:
    """The 117 grid intersections on ``result.warped`` (warped px), when there is a grid model."""
    if models.grid is None:
        result.status["grid"] = "skipped: two-stage (no grid model)"
        return
    (grid,) = models.grid.predict([result.warped])
    if grid.no_grid:
        result.status["grid"] = f"skipped: {grid.no_grid}"
        return
    result.status["grid"] = "ok"
    result.grid_xy = grid.keypoints_xy


def stage_removal(result: PhotoResult, models: ChainModels) -> None:
    """``result.clean``: the warped quadrat with the grid found painted out (``result.grid_mask``,
    the pixels invented), else the warped quadrat itself."""
    from grid_inpainting.inpaint import remove_grid

    result.clean = result.warped
    if result.grid_xy is None:
        result.status["removal"] = "skipped: no grid"
    elif models.inpaint is None:
        result.status["removal"] = "skipped: no inpainting backend"
    else:
        (removal,) = remove_grid([result.warped], [result.grid_xy], models.inpaint)
        result.clean, result.grid_mask = removal.image, removal.mask
        result.status["removal"] = f"ok ({removal.backend})"


def stage_segmentation(result: PhotoResult, models: ChainModels) -> None:
    """Colonies and/or a class map of ``result.clean`` and the cover over the pixels observed (those
    the grid removal did not invent, unless ``models.include_inpainted``)."""
    height, width = result.clean.shape[:2]
    observed = np.ones((height, width), dtype=bool)
    if result.grid_mask is not None and not models.include_inpainted:
        observed &= ~result.grid_mask
    result.observed_hw = observed
    segmentation = SEGMENTATION_MODES[segmentation_mode(models)](result.clean, models, observed)
    result.instances, result.class_map, result.cover = (
        segmentation.instances,
        segmentation.class_map,
        segmentation.cover,
    )
    result.status["segmentation"] = segmentation.status
    result.status["cover"] = "ok"


@dataclass(frozen=True)
class ChainStage:
    """One stage of the chain: its name, the :class:`ChainModels` fields whose models it calls, and
    the function that advances a :class:`PhotoResult` through it."""

    name: str
    models: tuple[str, ...]
    run: Callable[[PhotoResult, ChainModels], None]


# in order; an engine runs them one after the other on a photo (pipeline.engine_local) or each in
# its own pool of workers (pipeline.engine_ray)
CHAIN_STAGES = (
    ChainStage("corners", ("corners",), stage_corners),
    ChainStage("grid", ("grid",), stage_grid),
    ChainStage("removal", ("inpaint",), stage_removal),
    ChainStage("segmentation", ("segment", "semantic"), stage_segmentation),
)


def stopped(result: PhotoResult) -> bool:
    """True when a stage stopped the photo (its later stages do not run)."""
    return any(status.startswith("stopped") for status in result.status.values())


def run_stage(stage: ChainStage, result: PhotoResult, models: ChainModels) -> None:
    """``stage`` on ``result`` unless an earlier stage stopped the photo."""
    if not stopped(result):
        stage.run(result, models)


def run_stages(result: PhotoResult, models: ChainModels) -> PhotoResult:
    """Every stage in turn on a photo started as ``result`` (its ``raw`` photo); returns it."""
    segmentation_mode(models)  # a chain with no segmentation model is refused before any stage
    for stage in CHAIN_STAGES:
        run_stage(stage, result, models)
    return result


def run_chain(image_rgb: np.ndarray, models: ChainModels) -> PhotoResult:
    """Run the chain on one uint8 RGB photo (H, W, 3); see the module docstring."""
    return run_stages(PhotoResult(raw=image_rgb), models)
