"""Semantic probabilities -> coral colonies, refined with segment-anything (SAM or CoralSCoP weights).

1. Seeds: connected parts of each coral class in the arg-max map, keeping pixels whose top
   probability reaches ``min_threshold``; parts under ``min_area`` px are dropped. Seeds and SAM's
   masks are :class:`quadratseg.instances.Instance` (a mask kept inside its box), compared with the
   core's :func:`quadratseg.instances.mask_iou`.
2. Refinement: each seed prompts SAM with its box and its most interior point (largest
   distance to the seed's border); of SAM's three masks, the one agreeing best with the seed
   (IoU) is kept. When even that one agrees less than ``min_agreement`` (SAM leaked into the
   background or cut the colony), the seed itself is kept and the instance says so
   (``source="semantic"``).
3. Label and score: the class with the highest mean probability inside the refined mask, and
   that mean. Instances under ``min_threshold`` are dropped; those under ``unsure_threshold``
   are kept with ``unsure=True``.
4. Overlaps: instances claim pixels in order of score; a later one loses the pixels already
   claimed and is dropped when less than ``min_area`` remains. Every part and hole of what is left
   is kept (the instance's area and mask say the same; its largest part is what a single CVAT
   polygon carries).

Without SAM weights the seeds are the instances (``refinement="none"``, logged and recorded).
SAM is built from segment_anything's modelling classes with the encoder's size read from the
weights file (ViT-B/L/H, or a small test model); a CoralSCoP file loads into it with its extra
keys (the coral/non-coral head, which vanilla SAM has no use for) reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.instances import Instance, mask_iou

logger = logging.getLogger(__name__)

SAM_PROMPT_DIM = 256
SAM_PATCH = 16
SAM_WINDOW = 14


@dataclass
class RefineConfig:
    """Thresholds of :func:`refine_instances` (probabilities 0..1, areas in px)."""

    min_threshold: float = 0.5
    unsure_threshold: float = 0.75
    min_area: int = 64
    min_agreement: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_threshold <= self.unsure_threshold <= 1.0:
            raise QuadratsegError(
                f"thresholds must satisfy 0 <= --min-threshold ({self.min_threshold}) <= "
                f"--unsure-threshold ({self.unsure_threshold}) <= 1"
            )


def sam_encoder_shape(state: dict[str, Any]) -> dict[str, Any]:
    """Encoder size of a SAM state dict: embed dim, depth, heads, global-attention blocks, image size."""
    try:
        embed_dim = int(state["image_encoder.patch_embed.proj.weight"].shape[0])
        grid = int(state["image_encoder.pos_embed"].shape[1])
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks."))
        head_dim = int(state["image_encoder.blocks.0.attn.rel_pos_h"].shape[1])
        global_blocks = [
            i
            for i in range(depth)
            if int(state[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0]) == 2 * grid - 1
        ]
    except (KeyError, ValueError, IndexError) as exc:
        raise QuadratsegError(
            f"not a segment-anything checkpoint (no {exc} in the image encoder); give a SAM ViT-B/L/H "
            "(sam_vit_b_01ec64.pth) or CoralSCoP (vit_b_coralscop.pth) file"
        ) from exc
    return {
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": embed_dim // head_dim,
        "global_attn_indexes": global_blocks,
        "img_size": grid * SAM_PATCH,
    }


def build_sam_model(shape: dict[str, Any]) -> Any:
    """A SAM with random weights and the given encoder shape (segment_anything's modelling classes)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    size = shape["img_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=shape["depth"],
            embed_dim=shape["embed_dim"],
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=shape["num_heads"],
            patch_size=SAM_PATCH,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=shape["global_attn_indexes"],
            window_size=SAM_WINDOW,
            out_chans=SAM_PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=SAM_PROMPT_DIM,
            image_embedding_size=(size // SAM_PATCH, size // SAM_PATCH),
            input_image_size=(size, size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=SAM_PROMPT_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=SAM_PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam(weights: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """SAM (eval mode, on ``device``) from a local SAM or CoralSCoP file, and a load report.

    The report holds the encoder shape and the file's keys SAM does not use (CoralSCoP's extra
    head). Missing or mis-shaped SAM weights are an error.
    """
    from DINOv2_mmseg.compat import load_state_dict_file

    state = load_state_dict_file(weights, "SAM/CoralSCoP")
    shape = sam_encoder_shape(state)
    sam = build_sam_model(shape)
    own = sam.state_dict()
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = sorted(set(own) - set(state))
    if wrong or missing:
        raise QuadratsegError(
            f"{weights} does not fit segment-anything's SAM: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(wrong)} of another shape (e.g. {wrong[:2]})"
        )
    extra = sorted(set(state) - set(own))
    sam.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    if extra:
        logger.warning(
            "%s: %d keys SAM does not use were left out (e.g. %s); a CoralSCoP file's coral/non-coral head "
            "is not used",
            weights,
            len(extra),
            ", ".join(extra[:3]),
        )
    return sam.to(device).eval(), {**shape, "extra_keys": extra, "weights": str(weights)}


def instance_from_full(mask: np.ndarray, label: str = "") -> Instance | None:
    """The instance of a full-frame bool mask (H, W), cropped to its box; None when empty."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))  # one pass over the non-zero pixels
    if w == 0 or h == 0:
        return None
    return Instance(label, 0.0, mask[y : y + h, x : x + w].copy(), (x, y))


def top_class(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max class (H, W) uint8 and its probability (H, W) of probs (C, H, W), one pass per class.

    Equal to ``probs.argmax(0)`` / ``probs.max(0)`` (first class wins ties), several times faster on
    large images than numpy's strided reduction over the first axis.
    """
    index = np.zeros(probs.shape[1:], dtype=np.uint8)
    best = probs[0].copy()
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        index[better] = c
        np.maximum(best, probs[c], out=best)
    return index, best


def semantic_seeds(
    probs: np.ndarray,
    min_threshold: float,
    min_area: int,
    background: int = 0,
    classes: list[str] | None = None,
) -> list[tuple[int, Instance]]:
    """(class index, seed) for each confident connected part of each coral class of probs (C, H, W); a
    seed is an :class:`Instance` labelled ``classes[index]`` (the index as text without ``classes``),
    score 0 (scored after refinement)."""
    top, best = top_class(probs)
    confident = best >= min_threshold
    seeds = []
    for class_id in range(probs.shape[0]):
        if class_id == background:
            continue
        region = ((top == class_id) & confident).astype(np.uint8)
        if not region.any():
            continue
        n, parts, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area >= min_area:
                label = classes[class_id] if classes else str(class_id)
                seeds.append((class_id, Instance(label, 0.0, parts[y : y + h, x : x + w] == k, (x, y))))
    return seeds


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel farthest from the mask's border (in the mask's own frame)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return int(x), int(y)


def sam_refine(predictor: Any, seed: Instance) -> tuple[Instance | None, float]:
    """SAM's mask (of three) agreeing best with ``seed`` (prompt: its box and interior point), and the IoU."""
    x0, y0, x1, y1 = seed.xyxy
    px, py = interior_point(seed.box_mask)
    masks, _, _ = predictor.predict(
        point_coords=np.array([[x0 + px, y0 + py]], dtype=np.float32),
        point_labels=np.array([1]),
        box=np.array([x0, y0, x1, y1], dtype=np.float32),
        multimask_output=True,
    )
    best, best_iou = None, -1.0
    for mask in masks:
        candidate = instance_from_full(mask, seed.label)
        if candidate is None:
            continue
        iou = mask_iou(candidate, seed)
        if iou > best_iou:
            best, best_iou = candidate, iou
    return best, max(best_iou, 0.0)


def region_mean(probs: np.ndarray, region: Instance) -> np.ndarray:
    """Mean probability (C,) of each class over an instance's pixels (a matrix-vector product, box only)."""
    x0, y0, x1, y1 = region.xyxy
    crop = np.ascontiguousarray(probs[:, y0:y1, x0:x1]).reshape(probs.shape[0], -1)
    weights = region.box_mask.reshape(-1).astype(probs.dtype)
    return crop @ weights / max(float(weights.sum()), 1.0)


def refine_instances(
    image_rgb: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    sam_predictor: Any | None = None,
    config: RefineConfig | None = None,
) -> list[Instance]:
    """Colonies of one image from class probabilities (C, H, W) and, when given, a SAM predictor.

    ``image_rgb`` is uint8 (H, W, 3); the instances' outlines are in its pixel frame, each with
    ``extra`` = ``{"unsure", "source" ("sam" | "semantic"), "sam_iou", "area"}``. Every mask is
    handled inside its bounding box, so memory and time follow the colonies, not the image size.
    """
    cfg = config or RefineConfig()
    if probs.shape[1:] != image_rgb.shape[:2]:
        raise QuadratsegError(
            f"probabilities {probs.shape[1:]} and image {image_rgb.shape[:2]} differ in size"
        )
    seeds = semantic_seeds(probs, cfg.min_threshold, cfg.min_area, classes=classes)
    if sam_predictor is not None and seeds:
        sam_predictor.set_image(image_rgb, image_format="RGB")
    candidates = []
    for _, seed in seeds:
        source, agreement, region = "semantic", None, seed
        if sam_predictor is not None:
            refined, agreement = sam_refine(sam_predictor, seed)
            if refined is not None and agreement >= cfg.min_agreement:
                region, source = refined, "sam"
        mean = region_mean(probs, region)
        label_id = int(np.argmax(mean[1:]) + 1)  # a coral class: the seed was one
        score = float(mean[label_id])
        if score >= cfg.min_threshold:
            candidates.append((score, label_id, region, source, agreement))
    candidates.sort(key=lambda c: -c[0])
    claimed = np.zeros(probs.shape[1:], dtype=bool)
    instances = []
    for score, label_id, region, source, agreement in candidates:
        x0, y0, x1, y1 = region.xyxy
        own = region.box_mask & ~claimed[y0:y1, x0:x1]
        area = int(np.count_nonzero(own))
        if area < cfg.min_area:
            continue
        claimed[y0:y1, x0:x1] |= own
        extra = {
            "unsure": score < cfg.unsure_threshold,
            "source": source,
            "sam_iou": None if agreement is None else round(agreement, 3),
            "area": area,
        }
        # every part and hole of the colony is kept: its area and its mask say the same
        instances.append(Instance.from_mask(classes[label_id], score, own, (x0, y0), extra))
    return instances


def sam_predictor_for(sam: Any) -> Any:
    """segment_anything's SamPredictor around a loaded SAM."""
    from segment_anything import SamPredictor

    return SamPredictor(sam)
