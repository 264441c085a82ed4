"""CLI: semantic segmentation refined into colonies with SAM/CoralSCoP, for an image or a folder.

    python -m DINOv2_mmseg.predict CONFIG CHECKPOINT IMAGES OUT_DIR --sam-weights vit_b_coralscop.pth \
        [--min-threshold 0.5 --unsure-threshold 0.75]

Writes, whole or not at all, per image key (its path relative to IMAGES, suffix kept: ``site/a.jpg``):
``semantic/<key>.png`` (uint8 class index), ``instances/<key>.png``
(uint16 instance id, 0 = none; id k is annotation k of the image in the COCO file),
``predictions_coco.json`` (file_name = key; polygons, scores, ``attributes``: unsure, source, sam_iou,
area), ``overlays/<key>_semantic.jpg`` and ``overlays/<key>_instances.jpg``, ``cover.csv`` and
``colonies.csv`` (the tables of ``pipeline.process``, :mod:`quadratseg.cover_table`: cover per image x
level x class from the class probabilities with the block interval; without grid keypoints the whole
frame counts as observed), ``failures.csv`` and ``summary.json``.
Images are read upright (EXIF orientation applied); an image that fails is recorded in
``failures.csv``, the others go on, and the CLI exits 3 (see :mod:`quadratseg.batch`).
Without ``--sam-weights`` the instances are the semantic seeds (refinement "none", recorded).
"""

from __future__ import annotations

import json
import logging
import time

import cv2
import numpy as np

from DINOv2_mmseg.coral_pipeline import CoralPipeline
from DINOv2_mmseg.sam_refine import RefineConfig, refine_instances, top_class
from quadratseg.atomic import atomic_output_dir
from quadratseg.batch import BatchItem, batch_items, run_batch
from quadratseg.cover import semantic_cover
from quadratseg.cover_table import (
    COLONY_COLUMNS,
    COVER_COLUMNS,
    colony_rows,
    colony_stats,
    cover_rows,
    write_table,
)
from quadratseg.images import output_name, read_image_rgb
from quadratseg.instances import CocoInstances, Instance
from quadratseg.photo_meta import photo_place
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_polygons

logger = logging.getLogger(__name__)


def semantic_overlay(
    image_rgb: np.ndarray, classes_map: np.ndarray, palette: list[list[int]], alpha: float = 0.5
):
    """Blend the class colours (palette RGB per class; background 0 left clear) over the image."""
    colours = np.asarray(palette or [[0, 0, 0]] * (int(classes_map.max()) + 1), dtype=np.uint8)
    painted = colours[classes_map]
    out = image_rgb.copy()
    coral = classes_map > 0
    out[coral] = (alpha * painted[coral] + (1 - alpha) * image_rgb[coral]).astype(np.uint8)
    return out


def instance_id_map(instances: list[Instance], frame_size: tuple[int, int]) -> np.ndarray:
    """uint16 (H, W) map: pixel = 1 + index of the instance that covers it (later ones on top)."""
    width, height = frame_size
    ids = np.zeros((height, width), dtype=np.uint16)
    for k, inst in enumerate(instances, start=1):
        inst.paint(ids, k)
    return ids


def predict(
    config: str,
    checkpoint: str,
    images: str,
    out_dir: str,
    sam_weights: str | None = None,
    min_threshold: float = 0.5,
    unsure_threshold: float = 0.75,
    min_area: int = 64,
    min_agreement: float = 0.5,
    device: str = "auto",
    overwrite: bool = False,
    trust_checkpoint: bool = False,
) -> str:
    """Segment coral colonies: DINOv2 + SegFormer probabilities refined into instances with SAM/CoralSCoP.

    Args:
        config: the MMSeg config the checkpoint was trained with.
        checkpoint: the segmentor checkpoint (training checkpoint or best_segformer.pth).
        images: an image file or a folder of images (sub-folders too).
        out_dir: output folder, created when complete.
        sam_weights: local SAM ViT-B or CoralSCoP checkpoint (vit_b_coralscop.pth); default SAM_CHECKPOINT;
            none: no refinement (colonies are the semantic seeds; recorded in summary.json).
        min_threshold: least class probability to seed and to keep a colony.
        unsure_threshold: colonies under this mean probability are kept, marked unsure.
        min_area: smallest colony in px.
        min_agreement: least IoU between SAM's mask and the semantic seed to use SAM's mask.
        device: cpu or cuda:N; auto: QUADRATSEG_DEVICE.
        overwrite: replace out_dir if it exists.
        trust_checkpoint: load a checkpoint that holds Python objects beyond tensors and mmengine's own
            types with full unpickling (it can run code: trusted files only).

    Returns:
        JSON summary (images, colonies, unsure ones, refinement, seconds).
    """
    from quadratseg.cli import current_settings, weights_path
    from quadratseg.cli import device as choose_device

    settings = current_settings()
    checkpoint, device = weights_path(checkpoint, settings), choose_device(device, settings)

    items = batch_items(images)
    sam_weights = weights_path(sam_weights, settings) or (str(settings.sam_checkpoint or "") or None)
    refine = RefineConfig(min_threshold, unsure_threshold, int(min_area), min_agreement)
    pipeline = CoralPipeline(config, checkpoint, sam_weights, refine, device, bool(trust_checkpoint))
    coral_classes = pipeline.classes[1:]
    palette = pipeline.segmenter.palette
    colors = (
        {n: "#{:02x}{:02x}{:02x}".format(*palette[k + 1]) for k, n in enumerate(coral_classes)}
        if palette
        else {}
    )
    coco = CocoInstances(coral_classes)
    taxonomy = load_taxonomy()
    from quadratseg.model_card import card_level

    # the model's level, the same on every photo: its card's (model_card.json beside the checkpoint)
    level, note = taxonomy.model_level(coral_classes, card_level(checkpoint))
    if note:
        logger.warning("%s", note)
    cover_table, colony_table = [], []
    start = time.perf_counter()

    def one(item: BatchItem) -> None:
        rgb = read_image_rgb(item.path)
        probs = pipeline.segmenter.predict_probs(rgb)  # kept for the cover's interval
        classes_map = top_class(probs)[0]
        instances = refine_instances(rgb, probs, pipeline.classes, pipeline.sam_predictor, pipeline.refine)
        size = (rgb.shape[1], rgb.shape[0])
        place = photo_place(item.key)
        whole_frame = np.ones(classes_map.shape, dtype=bool)  # no grid keypoints: every pixel observed
        estimates = semantic_cover(probs, pipeline.classes, whole_frame)
        covers = cover_rows(item.key, place, estimates, 1.0, taxonomy, level)
        colonies = colony_rows(item.key, place, colony_stats(instances), taxonomy, level)
        sem = semantic_overlay(rgb, classes_map, palette)
        inst = draw_polygons(
            rgb,
            [(i.label + ("?" if i.extra.get("unsure") else ""), i.rings) for i in instances],
            colors,
        )
        for sub, ext, array in (
            ("semantic", ".png", classes_map),
            ("instances", ".png", instance_id_map(instances, size)),
            ("overlays", "_semantic.jpg", cv2.cvtColor(sem, cv2.COLOR_RGB2BGR)),
            ("overlays", "_instances.jpg", cv2.cvtColor(inst, cv2.COLOR_RGB2BGR)),
        ):
            target = tmp / sub / output_name(item.key, ext)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), array):
                raise OSError(f"cannot write {target}")
        coco.add_image(item.key, size, instances)
        cover_table.extend(covers)  # last: a photo that fails on the way leaves no row
        colony_table.extend(colonies)

    with atomic_output_dir(out_dir, overwrite) as tmp:
        for sub in ("semantic", "instances", "overlays"):
            (tmp / sub).mkdir()
        report = run_batch(items, one, "segmenting")
        report.write(tmp)
        (tmp / "predictions_coco.json").write_text(json.dumps(coco.to_dict()), encoding="utf-8")
        order = {item.key: k for k, item in enumerate(items)}  # rows in image order, whatever finished first
        write_table(tmp / "cover.csv", COVER_COLUMNS, sorted(cover_table, key=lambda r: order[r["photo"]]))
        write_table(
            tmp / "colonies.csv", COLONY_COLUMNS, sorted(colony_table, key=lambda r: order[r["photo"]])
        )
        summary = {
            "images": report.done,
            "failed": len(report.failures),
            "colonies": len(coco.annotations),
            "unsure": sum(1 for a in coco.annotations if a.get("attributes", {}).get("unsure")),
            "refinement": pipeline.refinement,
            "sam": pipeline.sam_report
            and {k: v for k, v in pipeline.sam_report.items() if k != "extra_keys"},
            "sam_extra_keys": len(pipeline.sam_report["extra_keys"]) if pipeline.sam_report else 0,
            "thresholds": {"min": min_threshold, "unsure": unsure_threshold, "min_agreement": min_agreement},
            "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    result = json.dumps({**summary, "out_dir": out_dir}, indent=2)
    report.raise_if_failed(out_dir, result)
    return result


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="DINOv2_mmseg.predict")
