"""CLI: from a folder of raw photos to colonies and percent cover with intervals.

    python -m pipeline.process IMAGES OUT --corners W --grid W --inpaint opencv-telea --yolo W
    quadratseg-process IMAGES OUT ...            (the same, as a console command)

The chain is :mod:`pipeline.chain` (one photo) and :mod:`pipeline.run` (a folder: outputs,
resumability, ``status.csv``, ``cover.csv``, ``cover_summary.csv``); see their docstrings and
``pipeline/README.md``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.calibration import read_calibration
from pipeline.chain import ChainModels
from pipeline.claims import DEFAULT_CLAIM_TTL_S
from pipeline.run import (
    ENGINES,
    WEIGHT_FILES,
    EngineOptions,
    RunConfig,
    check_output_folder,
    process_folder,
    run_fingerprint,
)
from quadratseg.cover import TERMS_TWICE
from quadratseg.ensemble import ENSEMBLES
from quadratseg.errors import QuadratsegError
from quadratseg.options import as_number


def process(
    images: str,
    out_dir: str,
    yolo: str | None = None,
    corners: str | None = None,
    grid: str | None = None,
    inpaint: str = "lama",
    grid_template: str | None = None,
    warp_size: int | None = None,
    allow_warp_size_mismatch: bool = False,
    allow_scale_mismatch: bool = False,
    aspect: float = 1.0,
    quadrat_cm: float | None = None,
    metadata: str | None = None,
    corners_imgsz: int | None = None,
    grid_imgsz: int | None = None,
    yolo_imgsz: int | None = None,
    corners_conf: float | None = None,
    corners_kpt_conf: float | None = None,
    corners_max_cost: float | None = None,
    corners_refine: bool = True,
    grid_conf: float | None = None,
    grid_kpt_conf: float | None = None,
    grid_max_cost: float | None = None,
    conf: float | None = None,
    include_inpainted: bool = False,
    boundary_px: float = 0.0,
    miss_pp: float = 0.0,
    calibration: str | None = None,
    overlays: bool = True,
    segment: str = "yolo",
    mmseg_config: str | None = None,
    mmseg_weights: str | None = None,
    ensemble: str = "weighted",
    ensemble_weight: float = 0.5,
    nms_iou: float = 0.5,
    engine: str = "local",
    ray_address: str | None = None,
    ray_workers: int = 1,
    ray_gpus_per_model: float = 0.0,
    ray_cpus_per_model: float = 0.5,
    claim_ttl: float = DEFAULT_CLAIM_TTL_S,
    writers: int = 2,
) -> str:
    """Colonies and percent cover for every photo of a folder (searched recursively).

    The options become one :class:`pipeline.run.RunConfig`; a rerun into OUT skips a photo only
    when that configuration, the package version and the content of every file it names (weights,
    their model cards, template, the MMSeg config with its _base_ chain, LaMa weights) are
    unchanged; --quadrat-cm and --metadata only rebuild the tables.

    Args:
        images: a photo or a folder of photos (site/year sub-folders are kept in the outputs).
        out_dir: output folder; a rerun into it skips the photos already done with the same options.
        yolo: YOLO-seg weights (coral_seg_yolo) for the colonies (--segment yolo).
        corners: corner model weights (gridcorners); without it the photos are taken as warped quadrats.
        grid: grid model weights (gridpose); without it no grid is removed (two-stage).
        inpaint: grid removal backend: lama (LAMA_MODEL weights), opencv-telea or opencv-ns.
        grid_template: the grid template .npy of make_template (default: the grid model's card's,
            else evenly spaced).
        warp_size: width of the warped quadrat in px. Default: the warp_size of the models' cards
            (what they were trained on), else 1920 (what annotators label). A size that disagrees
            with a card is refused.
        allow_warp_size_mismatch: accept a --warp-size that disagrees with a model card. Without
            --corners the photos (warped quadrats) are resized to the warp size.
        allow_scale_mismatch: accept a --yolo-imgsz that feeds the YOLO model its windows (its
            card's tile, else the whole warped quadrat) at another scale than it learned.
        aspect: the quadrat's width / height (1: square).
        quadrat_cm: the quadrat's inner width in cm, for areas in cm^2 (cover.csv, colonies.csv).
        metadata: CSV with columns photo (or key), site, year, quadrat: the photo's path relative
            to IMAGES (or its file name) and its site, year and quadrat. Without it (or for photos
            it does not list) they come from the folders of the key (site/year/photo.jpg), then
            from the file name (site_year_quadrat, CRIOBE's SITE###...###YYYYMMDD_..._N).
        corners_imgsz: inference size of the corner model (default: its training size).
        grid_imgsz: inference size of the grid model.
        yolo_imgsz: inference size of the segmentation model.
        corners_conf: detection threshold of the corner model (default: its model card's).
        corners_kpt_conf: keypoint confidence threshold of the corner model (default: its card's).
        corners_max_cost: template matching threshold of the corners (default: its card's).
        corners_refine: move the corners to the frame's inner edges and refuse a frame whose sides
            are not straight edges of the photo (default); --no-corners-refine warps with the
            model's corners as they are (the frame check does not yet confirm every real frame:
            see grid_pose_detection/README.md).
        grid_conf: detection threshold of the grid model (default: its model card's).
        grid_kpt_conf: keypoint confidence threshold of the grid model (default: its card's).
        grid_max_cost: template matching threshold of the grid points (default: its card's).
        conf: confidence threshold of the colonies (0..1; default: the YOLO model card's, measured on
            its val split when it was trained; 0.25 for a model whose card has none).
        include_inpainted: count the pixels under the grid (invented by inpainting) in the cover.
        boundary_px: how far (px) a colony's outline may be off, for the cover intervals; 0 keeps the
            confidence term only. Fit the interval terms on annotated photos
            (quadratseg.cover.fit_cover_calibration; the demo fits them on its validation photos).
        miss_pp: cover (percentage points, 0..100) of a class the model may miss entirely on a photo: the
            upper bound of every class it did not see (quadratseg.cover.calibrate_miss_pp fits it
            on held-out photos); 0 leaves it out.
        calibration: the segmenter's fitted interval terms (JSON of python -m pipeline.calibrate, on
            annotated photos the model did not train on): intervals that hold 95 %, at the model's
            level and every coarser one; instead of --boundary-px and --miss-pp.
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
        engine: local (this process, reading and writing overlapped with the chain) or ray (Ray
            Data over the photo paths, each model in a pool of actors: needs the ``ray`` extra).
            The engine options are not part of the run's fingerprint: a run resumes across engines.
        ray_address: the Ray cluster to join (``auto``: Ray's ``RAY_ADDRESS``, else the one ``ray
            start`` made on this machine; ``ray://HOST:10001``); default: a Ray instance of this
            process's own (never the last cluster ``ray start`` recorded on this machine).
        ray_workers: how many actors in each model's pool (the corner, grid, LaMa and segmentation
            stages each have a pool; an actor holds its stage's models only).
        ray_gpus_per_model: GPUs each actor asks per model it holds (fractions share a GPU: 0.25
            lets four small models' actors share one GPU); 0 runs on CPUs.
        ray_cpus_per_model: CPUs each model actor reserves (default 0.5; the CPU tasks reserve 0.5
            each, fixed).
        claim_ttl: seconds after which a photo claimed by a run that stopped (its heartbeat is
            touched every claim_ttl / 4 s) is taken over by another run on the same OUT.
        writers: local engine: threads writing photos' outputs at once (a 1920 px photo's outputs take
            about 0.15 s of CPU, benchmarks/bench_scale.py; more writers keep up with a fast GPU on a
            machine with cores to spare).

    Returns:
        JSON summary: photos, processed, skipped (resumed), failed, with cover, outputs.
    """
    options = dict(locals())
    config = RunConfig(
        **{k: v for k, v in options.items() if k not in ("images", "out_dir", *ENGINE_OPTIONS)}
    )
    engine_options = EngineOptions(
        engine=engine,
        ray_address=ray_address,
        ray_workers=ray_workers,
        ray_gpus_per_model=ray_gpus_per_model,
        ray_cpus_per_model=ray_cpus_per_model,
        claim_ttl_s=claim_ttl,
        writers=writers,
    )  # each number checked by EngineOptions
    return json.dumps(process_with(images, out_dir, config, engine_options), indent=2)


# options of how a run executes, not of what it computes: left out of RunConfig and the fingerprint
ENGINE_OPTIONS = (
    "engine",
    "ray_address",
    "ray_workers",
    "ray_gpus_per_model",
    "ray_cpus_per_model",
    "claim_ttl",
    "writers",
)


def process_with(
    images: str | Path, out_dir: str | Path, config: RunConfig, engine: EngineOptions | None = None
) -> dict[str, Any]:
    """:func:`process` with its options as one :class:`RunConfig` (and how to run it, ``engine``);
    returns the summary. The Ray engine's actors build the models with :func:`build_models` from the
    same configuration. The options, the output folder (:func:`pipeline.run.check_output_folder`)
    and the metadata CSV are checked before any model is loaded."""
    from quadratseg.cli import current_settings, weights_path

    settings = current_settings()
    # weights named relative to QUADRATSEG_MODELS_DIR become the files they are, once, here
    config = replace(config, **{name: weights_path(getattr(config, name), settings) for name in WEIGHT_FILES})
    if config.calibration:  # one file, whatever the working folder of the process that reads it
        config = replace(config, calibration=str(Path(config.calibration).resolve()))
    config = check_numbers(config)
    check_options(config)
    engine = engine or EngineOptions()
    if engine.engine not in ENGINES:
        raise QuadratsegError(f"--engine must be one of {', '.join(ENGINES)}, got {engine.engine!r}")
    check_output_folder(out_dir)  # bad input is refused before any model is loaded
    table = None
    if config.metadata:  # read once, here: a bad table stops the run before any model is loaded
        from quadratseg.photo_meta import read_photo_metadata

        table = read_photo_metadata(config.metadata)
    config = replace(config, warp_size=resolve_warp_size(config))
    # a Ray run's driver only checks the models and reads their classes: it builds them on the CPU,
    # whatever device the actors use (a cluster's head node may have no GPU)
    models = build_models(config, settings.replace(device="cpu") if engine.engine == "ray" else settings)
    if engine.engine == "ray":
        engine = replace(engine, models_factory=partial(build_models, config, settings))
    lama = settings.lama_model if config.grid and config.inpaint == "lama" else None
    fingerprint = run_fingerprint(config, {"lama": lama})
    from quadratseg.warp import warped_size

    return process_folder(
        images,
        out_dir,
        models,
        fingerprint,
        config.quadrat_cm,
        config.overlays,
        metadata=table,
        warp_size=warped_size(config.warp_size, config.aspect),
        engine=engine,
    )


# RunConfig's numbers: (field, lower bound kind, lower, upper, whole number); None fields stay None
RUN_NUMBERS = (
    ("quadrat_cm", "above", 0, None, False),
    ("aspect", "above", 0, None, False),
    ("warp_size", "above", 0, None, True),
    ("corners_imgsz", "above", 0, None, True),
    ("grid_imgsz", "above", 0, None, True),
    ("yolo_imgsz", "above", 0, None, True),
    ("conf", "minimum", 0, 1, False),
    ("corners_conf", "minimum", 0, 1, False),
    ("corners_kpt_conf", "minimum", 0, 1, False),
    ("grid_conf", "minimum", 0, 1, False),
    ("grid_kpt_conf", "minimum", 0, 1, False),
    ("corners_max_cost", "above", 0, None, False),
    ("grid_max_cost", "above", 0, None, False),
    ("boundary_px", "minimum", 0, None, False),
    ("miss_pp", "minimum", 0, 100, False),
    ("ensemble_weight", "minimum", 0, 1, False),
    ("nms_iou", "above", 0, 1, False),
)


def check_numbers(config: RunConfig) -> RunConfig:
    """``config`` with every number option (:data:`RUN_NUMBERS`) checked against its range, and
    one given as text (fire hands a word it cannot read as a number through as text) read as its
    number.

    Raises:
        QuadratsegError: a value out of its option's range (a quadrat 0 cm wide, a confidence of
            1.5, a NaN), naming the option as typed on the command line.
    """
    numbers = {}
    for field, kind, low, high, integer in RUN_NUMBERS:
        value = getattr(config, field)
        if value is not None:
            option = "--" + field.replace("_", "-")
            number = as_number(option, value, **{kind: low}, maximum=high, integer=integer)
            # a number stays as given (2 and 2.0 hash apart in the run's fingerprint: an earlier
            # run's photos are not redone); text becomes its number
            numbers[field] = value if isinstance(value, int | float) else number
    return replace(config, **numbers)


def check_options(config: RunConfig) -> None:
    """Refuse option combinations that cannot run, saying which option is missing."""
    if config.segment not in ("yolo", "mmseg", "both"):
        raise QuadratsegError(f"--segment must be yolo, mmseg or both, got {config.segment!r}")
    if config.calibration and (config.boundary_px or config.miss_pp):
        raise QuadratsegError(f"--calibration: {TERMS_TWICE}")
    if config.segment in ("yolo", "both") and not config.yolo:
        raise QuadratsegError(
            f"--segment {config.segment} needs --yolo WEIGHTS (a YOLO-seg model of coral_seg_yolo)"
        )
    if config.segment in ("mmseg", "both") and not (config.mmseg_config and config.mmseg_weights):
        raise QuadratsegError(
            f"--segment {config.segment} needs --mmseg-config CONFIG and --mmseg-weights CHECKPOINT"
        )
    if config.segment == "both" and config.ensemble not in ENSEMBLES:
        raise QuadratsegError(f"--ensemble must be one of {', '.join(ENSEMBLES)}, got {config.ensemble!r}")


def resolve_warp_size(config: RunConfig) -> int:
    """The warped quadrat's width in px: ``--warp-size``, else the models' cards' ``warp_size``,
    else :data:`quadratseg.warp.DEFAULT_WARP_SIZE`.

    Raises:
        QuadratsegError: the cards disagree with each other, or ``--warp-size`` disagrees with a
            card, and ``--allow-warp-size-mismatch`` is not given (the message names the sizes).
    """
    from quadratseg.cli import weights_path
    from quadratseg.model_card import read_model_card
    from quadratseg.warp import DEFAULT_WARP_SIZE

    weights = {
        "--corners": config.corners,
        "--grid": config.grid,
        "--yolo": config.yolo if config.segment in ("yolo", "both") else None,
        "--mmseg-weights": config.mmseg_weights if config.segment in ("mmseg", "both") else None,
    }
    cards = {
        option: int(card["warp_size"])
        for option, path in weights.items()
        if path and (card := read_model_card(weights_path(path))).get("warp_size")
    }
    named = ", ".join(f"{option} {size} px" for option, size in cards.items())
    if config.allow_warp_size_mismatch and config.warp_size:
        return int(config.warp_size)
    if len(set(cards.values())) > 1:
        raise QuadratsegError(
            f"the models were made for different warped quadrat sizes ({named}); use models made "
            "for one size, or pass --warp-size N --allow-warp-size-mismatch"
        )
    if config.warp_size is None:
        return next(iter(cards.values()), DEFAULT_WARP_SIZE)
    if cards and int(config.warp_size) not in cards.values():
        raise QuadratsegError(
            f"--warp-size {config.warp_size} disagrees with the model card ({named}): the models would "
            f"see quadrats at another scale than they were trained on. Leave --warp-size out to use "
            f"{next(iter(cards.values()))}, or pass --allow-warp-size-mismatch"
        )
    return int(config.warp_size)


def build_models(config: RunConfig, settings: Any, only: tuple[str, ...] | None = None) -> ChainModels:
    """The chain's predictors for a checked configuration (``warp_size`` resolved), on the device of
    ``settings``; with ``only`` (names of :class:`ChainModels` fields, as a stage of the Ray engine
    asks) the other models are left out (None).

    Raises:
        QuadratsegError: a model of the wrong kind (a pose model given as --yolo, ...).
    """
    from coral_seg_yolo.predict import window_size
    from coral_seg_yolo.predictor import SegPredictor, card_windows
    from grid_inpainting.inpaint import select_backend
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task
    from quadratseg.cli import device, weights_path
    from quadratseg.keypoints import load_template
    from quadratseg.model_card import card_level, read_model_card

    on = device(settings=settings)

    def wanted(name: str) -> bool:
        return only is None or name in only

    semantic = None
    if config.segment in ("mmseg", "both") and wanted("semantic"):
        from DINOv2_mmseg.predictor import SemanticSegmenter

        semantic = SemanticSegmenter(config.mmseg_config, weights_path(config.mmseg_weights), on)
    segment = None
    if config.segment in ("yolo", "both") and wanted("segment"):
        windows = card_windows(weights_path(config.yolo))  # a model trained on tiles sees tiles
        if config.yolo_imgsz:  # the windows (a tile, else the whole quadrat) at the scale it learned
            side = windows.get("tile") or int(config.warp_size)
            window_size(
                read_model_card(weights_path(config.yolo)),
                side,
                config.yolo_imgsz,
                config.allow_scale_mismatch,
            )
        segment = SegPredictor(
            weights_path(config.yolo), imgsz=config.yolo_imgsz, conf=config.conf, device=on, **windows
        )
    corners = grid = None
    # thresholds left None come from the model's card (PosePredictor)
    if config.corners and wanted("corners"):
        corners = PosePredictor(
            weights_path(config.corners),
            get_task("gridcorners"),
            conf=config.corners_conf,
            kpt_conf=config.corners_kpt_conf,
            max_cost=config.corners_max_cost,
            imgsz=config.corners_imgsz,
            device=on,
            warp_size=config.warp_size,
            aspect=config.aspect,
            allow_warp_size_mismatch=config.allow_warp_size_mismatch,
            refine=config.corners_refine,
        )
    if config.grid and wanted("grid"):
        grid = PosePredictor(
            weights_path(config.grid),
            get_task("gridpose"),
            load_template(config.grid_template, 117) if config.grid_template else None,
            conf=config.grid_conf,
            kpt_conf=config.grid_kpt_conf,
            max_cost=config.grid_max_cost,
            imgsz=config.grid_imgsz,
            device=on,
        )
    for name, model in (("--corners", corners), ("--grid", grid)):
        if model is not None and model.model.task != "pose":
            raise QuadratsegError(f"{name} must be a YOLO pose model, got a {model.model.task} model")
    if segment is not None and segment.model.task != "segment":
        raise QuadratsegError(f"--yolo must be a YOLO segmentation model, got a {segment.model.task} model")
    return ChainModels(
        segment=segment,
        semantic=semantic,
        # the card (model_card.json beside the weights) of the model whose classes the cover reports
        # names their level: the colony model's alone, else the class map's
        level=card_level(weights_path(config.yolo if config.segment == "yolo" else config.mmseg_weights)),
        ensemble=config.ensemble if config.segment == "both" else "",
        ensemble_weight=config.ensemble_weight,
        nms_iou=config.nms_iou,
        corners=corners,
        grid=grid,
        inpaint=select_backend(config.inpaint, settings, option="--inpaint", weights_option=None)
        if config.grid and wanted("inpaint")
        else None,
        include_inpainted=config.include_inpainted,
        boundary_px=config.boundary_px,
        miss_pp=config.miss_pp,
        calibration=read_calibration(config.calibration) if config.calibration else None,
    )


def main() -> None:
    """Console entry ``quadratseg-process``."""
    from quadratseg.cli import run

    run(process, name="quadratseg-process")


if __name__ == "__main__":
    main()
