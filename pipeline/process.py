"""CLI: from a folder of raw photos to colonies and percent cover with intervals.

    python -m pipeline.process IMAGES OUT --corners W --grid W --inpaint opencv-telea --yolo W
    quadratseg-process IMAGES OUT ...            (the same, as a console command)

The chain is :mod:`pipeline.chain` (one photo) and :mod:`pipeline.run` (a folder: outputs,
resumability, ``status.csv``, ``cover.csv``, ``cover_summary.csv``); see their docstrings and
``pipeline/README.md``.
"""

from __future__ import annotations

import json

from pipeline.chain import ChainModels
from pipeline.run import fingerprint_of, process_folder
from quadratseg.ensemble import ENSEMBLES
from quadratseg.errors import QuadratsegError


def process(
    images: str,
    out_dir: str,
    yolo: str | None = None,
    corners: str | None = None,
    grid: str | None = None,
    inpaint: str = "lama",
    grid_template: str | None = None,
    warp_size: int = 1024,
    aspect: float = 1.0,
    quadrat_cm: float | None = None,
    corners_imgsz: int | None = None,
    grid_imgsz: int | None = None,
    yolo_imgsz: int | None = None,
    conf: float = 0.25,
    include_inpainted: bool = False,
    boundary_px: float = 0.0,
    miss_pp: float = 0.0,
    overlays: bool = True,
    segment: str = "yolo",
    mmseg_config: str | None = None,
    mmseg_weights: str | None = None,
    ensemble: str = "weighted",
    ensemble_weight: float = 0.5,
    nms_iou: float = 0.5,
) -> str:
    """Colonies and percent cover for every photo of a folder (searched recursively).

    Args:
        images: a photo or a folder of photos (site/year sub-folders are kept in the outputs).
        out_dir: output folder; a rerun into it skips the photos already done with the same options.
        yolo: YOLO-seg weights (coral_seg_yolo) for the colonies (--segment yolo).
        corners: corner model weights (gridcorners); without it the photos are taken as warped quadrats.
        grid: grid model weights (gridpose); without it no grid is removed (two-stage).
        inpaint: grid removal backend: lama (LAMA_MODEL weights), opencv-telea or opencv-ns.
        grid_template: the grid template .npy of make_template (default: evenly spaced).
        warp_size: width of the warped quadrat in px.
        aspect: the quadrat's width / height (1: square).
        quadrat_cm: the quadrat's inner width in cm, for colony areas in cm^2.
        corners_imgsz: inference size of the corner model (default: its training size).
        grid_imgsz: inference size of the grid model.
        yolo_imgsz: inference size of the segmentation model.
        conf: confidence threshold of the colonies.
        include_inpainted: count the pixels under the grid (invented by inpainting) in the cover.
        boundary_px: how far (px) a colony's outline may be off, for the cover intervals; 0 keeps the
            confidence term only. Fit it on annotated photos (quadratseg.cover_stats.calibrate_boundary_px;
            the demo fits it on its validation photos).
        miss_pp: cover (percentage points) the model may miss entirely on a photo, added to every
            upper bound (quadratseg.cover_stats.calibrate_miss_pp); 0 leaves it out.
        overlays: write overlay images.
        segment: yolo (colonies, instance interval), mmseg (class map of DINOv2_mmseg, block
            interval) or both (the two combined by --ensemble).
        mmseg_config: the MMSeg config of --mmseg-weights (--segment mmseg).
        mmseg_weights: the MMSeg checkpoint (--segment mmseg).
        ensemble: with --segment both: weighted (scores averaged per pixel) or voting (each model
            votes per pixel), both with the block interval; or nms (the colonies of both models
            pooled, the less confident of two overlapping ones dropped; instance interval).
        ensemble_weight: the colonies' weight in the weighted ensemble (0..1).
        nms_iou: the mask IoU at which the nms ensemble drops the less confident colony.

    Returns:
        JSON summary: photos, processed, skipped (resumed), failed, with cover, outputs.
    """
    from coral_seg_yolo.predictor import SegPredictor
    from grid_inpainting.inpaint import select_backend
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task
    from quadratseg.cli import current_settings, device, weights_path
    from quadratseg.keypoints import load_template
    from quadratseg.warp import warped_size

    settings = current_settings()
    size = warped_size(warp_size, aspect)
    if segment not in ("yolo", "mmseg", "both"):
        raise QuadratsegError(f"--segment must be yolo, mmseg or both, got {segment!r}")
    if segment in ("yolo", "both") and not yolo:
        raise QuadratsegError(
            f"--segment {segment} needs --yolo WEIGHTS (a YOLO-seg model of coral_seg_yolo)"
        )
    if segment in ("mmseg", "both") and not (mmseg_config and mmseg_weights):
        raise QuadratsegError(
            f"--segment {segment} needs --mmseg-config CONFIG and --mmseg-weights CHECKPOINT"
        )
    if segment == "both" and ensemble not in ENSEMBLES:
        raise QuadratsegError(f"--ensemble must be one of {', '.join(ENSEMBLES)}, got {ensemble!r}")
    semantic = None
    if segment in ("mmseg", "both"):
        from DINOv2_mmseg.predictor import SemanticSegmenter

        semantic = SemanticSegmenter(mmseg_config, weights_path(mmseg_weights), device())
    models = ChainModels(
        segment=SegPredictor(weights_path(yolo), imgsz=yolo_imgsz, conf=conf, device=device())
        if segment in ("yolo", "both")
        else None,
        semantic=semantic,
        ensemble=ensemble if segment == "both" else "",
        ensemble_weight=ensemble_weight,
        nms_iou=nms_iou,
        corners=PosePredictor(
            weights_path(corners),
            get_task("gridcorners"),
            imgsz=corners_imgsz,
            device=device(),
            warp_size=size,
        )
        if corners
        else None,
        grid=PosePredictor(
            weights_path(grid),
            get_task("gridpose"),
            load_template(grid_template, 117) if grid_template else None,
            imgsz=grid_imgsz,
            device=device(),
        )
        if grid
        else None,
        inpaint=select_backend(inpaint, settings) if grid else None,
        include_inpainted=include_inpainted,
        boundary_px=boundary_px,
        miss_pp=miss_pp,
    )
    for name, model in (("--corners", models.corners), ("--grid", models.grid)):
        if model is not None and model.model.task != "pose":
            raise QuadratsegError(f"{name} must be a YOLO pose model, got a {model.model.task} model")
    if models.segment is not None and models.segment.model.task != "segment":
        raise QuadratsegError(
            f"--yolo must be a YOLO segmentation model, got a {models.segment.model.task} model"
        )
    fingerprint = fingerprint_of(
        yolo,
        corners,
        grid,
        inpaint,
        grid_template,
        size,
        conf,
        include_inpainted,
        boundary_px,
        miss_pp,
        segment,
        mmseg_weights,
        ensemble,
        ensemble_weight,
        nms_iou,
    )
    summary = process_folder(images, out_dir, models, fingerprint, quadrat_cm, overlays)
    return json.dumps(summary, indent=2)


def main() -> None:
    """Console entry ``quadratseg-process``."""
    from quadratseg.cli import run

    run(process, name="quadratseg-process")


if __name__ == "__main__":
    main()
