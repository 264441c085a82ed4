"""The segmentor and its SAM refiner as one object: what ``predict``, the demo and the Nuclio handler call,
and its CVAT detector answer (:func:`cvat_answer`: the core's shapes plus each colony's ``unsure`` flag)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from DINOv2_mmseg.sam_refine import RefineConfig, load_sam, refine_instances, sam_predictor_for, top_class
from quadratseg.instances import Instance, cvat_shapes

logger = logging.getLogger(__name__)


UNSURE_ATTRIBUTE = "unsure"  # a checkbox attribute of every label of the deployed function


def cvat_answer(
    instances: list[Instance], frame_size: tuple[int, int], threshold: float = 0.0
) -> list[dict[str, Any]]:
    """CVAT's detector answer for colonies (:func:`quadratseg.instances.cvat_shapes`, ``frame_size=(width,
    height)``, ``threshold`` 0..1), each shape also carrying ``unsure`` as CVAT's checkbox values
    ``"true"``/``"false"`` so annotators can filter the colonies the model doubted."""
    shapes = []
    for inst in instances:
        for shape in cvat_shapes([inst], frame_size, threshold):
            unsure = "true" if inst.extra.get("unsure") else "false"
            shape["attributes"].append({"name": UNSURE_ATTRIBUTE, "value": unsure})
            shapes.append(shape)
    return shapes


class CoralPipeline:
    """Segmenter + optional SAM: the object the CLI, the demo and the Nuclio handler share."""

    def __init__(
        self,
        config: Any,
        checkpoint: str | Path,
        sam_weights: str | Path | None = None,
        refine: RefineConfig | None = None,
        device: str = "auto",
        trust_checkpoint: bool = False,
    ):
        from DINOv2_mmseg.predictor import SemanticSegmenter

        self.segmenter = SemanticSegmenter(config, checkpoint, device, trust_checkpoint)
        self.refine = refine or RefineConfig()
        self.sam_report: dict[str, Any] | None = None
        self.sam_predictor = None
        if sam_weights:
            sam, self.sam_report = load_sam(sam_weights, self.segmenter.device)
            self.sam_predictor = sam_predictor_for(sam)
        else:
            logger.warning(
                "no SAM weights given: colonies are the semantic seeds, not refined (refinement none)"
            )
        self.refinement = "sam" if self.sam_predictor is not None else "none"

    @property
    def classes(self) -> list[str]:
        """Class names, background first."""
        return self.segmenter.classes

    def __call__(self, image_rgb: np.ndarray) -> tuple[np.ndarray, list[Instance]]:
        """Class index map (H, W) uint8 and the colonies of one uint8 RGB image."""
        probs = self.segmenter.predict_probs(image_rgb)
        instances = refine_instances(image_rgb, probs, self.classes, self.sam_predictor, self.refine)
        return top_class(probs)[0], instances
