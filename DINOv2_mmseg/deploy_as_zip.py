"""CLI: package a DINOv2 + SegFormer segmentor with its SAM/CoralSCoP refiner as ``nuclio.zip`` for CVAT.

    python -m DINOv2_mmseg.deploy_as_zip pth-mmseg-coralscopsegformer \
        work_dirs/segformer/best_mIoU_epoch_150.pth work_dirs/segformer/dinov2_vitb14_segformer_coral.py \
        weights/vit_b_coralscop.pth --output outputs/pth-mmseg-coralscopsegformer

Inside ``nuclio/``: ``best_segformer.pth`` (a plain state dict + class names, loadable with
``weights_only=True``), ``best_segformer_config.py`` (the resolved config, no ``_base_``),
``vit_b_coralscop.pth``, ``main.py``, ``function.yaml`` and the project code. Everything is
checked before the zip is written: the checkpoint must fit the config, the SAM file must be SAM.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from DINOv2_mmseg.coral_pipeline import UNSURE_ATTRIBUTE
from quadratseg.formats.cvat_labels import AttributeSpec, LabelSpec, confidence_attribute, label_to_raw
from quadratseg.nuclio import BASE_PIP, FunctionSpec, write_nuclio_zip

PIP = (
    *BASE_PIP,
    "mmengine==0.10.7",
    "mmcv-lite==2.1.0",
    "mmsegmentation==1.2.2",
    "timm==1.0.31",
    "segment-anything==1.0",
    "ftfy==6.3.1",
    "regex==2026.11.15",
)
SEGFORMER_WEIGHTS = "best_segformer.pth"
SEGFORMER_CONFIG = "best_segformer_config.py"
SAM_WEIGHTS = "vit_b_coralscop.pth"


def dinov2_labels_spec(class_names: list[str]) -> list[dict[str, Any]]:
    """The function's label spec: one ``mask`` label per class with the confidence (number) and the
    ``unsure`` (checkbox, default false) attributes its answers carry."""
    unsure = AttributeSpec(UNSURE_ATTRIBUTE, "checkbox", True, ["false"], "false")
    return [
        {"id": i, **label_to_raw(LabelSpec(name, "mask", attributes=[confidence_attribute(), unsure]))}
        for i, name in enumerate(class_names)
    ]


def function_spec(
    model_name: str,
    class_names: list[str],
    segformer_weights: str | Path,
    segformer_config: str | Path,
    sam_weights: str | Path,
    min_threshold: float = 0.5,
    unsure_threshold: float = 0.75,
    gpu: bool = False,
) -> FunctionSpec:
    """The function spec for a segmentor with these classes (background excluded); reads no file.

    ``segformer_weights`` is the plain state dict and ``segformer_config`` the resolved config that
    :func:`deploy_as_zip` writes.
    """
    return FunctionSpec(
        name=model_name,
        display_name="Coral colonies (DINOv2 + SegFormer, CoralSCoP)",
        description="Semantic segmentation of coral genera refined into colonies with SAM/CoralSCoP",
        labels=dinov2_labels_spec(list(class_names)),
        main_py=Path(__file__).parent / "nuclio" / "main.py",
        files={
            SEGFORMER_WEIGHTS: Path(segformer_weights),
            SEGFORMER_CONFIG: Path(segformer_config),
            SAM_WEIGHTS: Path(sam_weights),
        },
        packages=("quadratseg", "DINOv2_mmseg"),
        pip=PIP,
        gpu=gpu,
        event_timeout="300s",
        env={
            "QUADRATSEG_MIN_THRESHOLD": str(min_threshold),
            "QUADRATSEG_UNSURE_THRESHOLD": str(unsure_threshold),
        },
    )


def deploy_as_zip(
    model_name: str,
    segformer_weights: str,
    segformer_config: str,
    sam_weights: str,
    output: str | None = None,
    min_threshold: float = 0.5,
    unsure_threshold: float = 0.75,
    gpu: bool = False,
    trust_checkpoint: bool = False,
) -> str:
    """Write nuclio.zip for the DINOv2 + SegFormer model refined with SAM/CoralSCoP.

    Args:
        model_name: function name (upstream: pth-mmseg-coralscopsegformer).
        segformer_weights: trained checkpoint (best_mIoU_epoch_N.pth).
        segformer_config: the config it was trained with (the work dir's copy).
        sam_weights: SAM ViT-B or CoralSCoP checkpoint (a local file).
        output: folder or .zip path (default: QUADRATSEG_OUTPUTS_DIR/<model_name>).
        min_threshold: least class probability to keep a colony.
        unsure_threshold: colonies under this mean probability are marked unsure (low confidence).
        gpu: build for an NVIDIA GPU.
        trust_checkpoint: read a segformer checkpoint that holds Python objects beyond tensors and
            mmengine's own types with full unpickling (it can run code: trusted files only); the zip gets
            a plain state dict either way.

    Returns:
        The path of the zip.
    """
    from DINOv2_mmseg.predictor import SemanticSegmenter, export_plain_checkpoint
    from DINOv2_mmseg.runner import load_config
    from DINOv2_mmseg.sam_refine import RefineConfig, load_sam
    from quadratseg.cli import current_settings, output_path, weights_path

    settings = current_settings()
    segformer_weights = weights_path(segformer_weights, settings)
    sam_weights = weights_path(sam_weights, settings)
    RefineConfig(min_threshold, unsure_threshold)  # validates the thresholds
    cfg = load_config(segformer_config)
    # refuses a checkpoint of another model
    segmenter = SemanticSegmenter(cfg, segformer_weights, "cpu", bool(trust_checkpoint))
    load_sam(sam_weights, "cpu")  # refuses a file that is not SAM
    with tempfile.TemporaryDirectory() as tmp:
        plain = export_plain_checkpoint(
            segformer_weights, Path(tmp) / SEGFORMER_WEIGHTS, bool(trust_checkpoint)
        )
        resolved = Path(tmp) / SEGFORMER_CONFIG
        cfg.dump(str(resolved))
        spec = function_spec(
            model_name,
            segmenter.classes[1:],
            plain,
            resolved,
            sam_weights,
            min_threshold,
            unsure_threshold,
            gpu,
        )
        return str(write_nuclio_zip(spec, output_path(output, model_name, settings)))


if __name__ == "__main__":
    from quadratseg.cli import run

    run(deploy_as_zip, name="DINOv2_mmseg.deploy_as_zip")
