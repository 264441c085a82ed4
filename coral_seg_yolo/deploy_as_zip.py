"""CLI: package a coral segmentation model as ``nuclio.zip`` for CVAT.

python -m coral_seg_yolo.deploy_as_zip pth-yolo-coralsegv4 best.pt --output outputs/pth-yolo-coralsegv4
"""

from __future__ import annotations

from pathlib import Path

from quadratseg.formats.cvat_labels import mask_labels_spec
from quadratseg.model_card import MODEL_CARD_NAME, model_card_path, read_model_card
from quadratseg.nuclio import BASE_PIP, FunctionSpec, write_nuclio_zip

PIP = (*BASE_PIP, "ultralytics==8.4.190")


def function_spec(
    model_name: str, class_names: list[str], weights: str, method: str = "direct", gpu: bool = False
) -> FunctionSpec:
    """The function spec for a model with these classes (in class-id order); the model's card
    (``model_card.json`` beside the weights) travels beside ``best.pt`` when there is one."""
    card = model_card_path(weights)
    files: dict[str, Path | bytes] = {"best.pt": Path(weights)}
    if card.is_file():
        files[MODEL_CARD_NAME] = card
    return FunctionSpec(
        name=model_name,
        display_name="Coral colonies (YOLO11-seg)",
        description="Instance segmentation of coral genera on warped, grid-free quadrats",
        labels=mask_labels_spec(list(class_names)),
        main_py=Path(__file__).parent / "nuclio" / "main.py",
        files=files,
        packages=("quadratseg", "coral_seg_yolo"),
        pip=PIP,
        gpu=gpu,
        env={"QUADRATSEG_SEG_METHOD": method, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"},
    )


def deploy_as_zip(
    model_name: str, weights: str, output: str | None = None, method: str | None = None, gpu: bool = False
) -> str:
    """Write nuclio.zip for a YOLO-seg coral model; the label spec is built from the model's classes.

    Args:
        model_name: function name (upstream: pth-yolo-coralsegv4, pth-yolo-coralsegbanggai).
        weights: trained model, stored as best.pt (a relative path missing here is looked up in
            QUADRATSEG_MODELS_DIR).
        output: folder or .zip path (default: QUADRATSEG_OUTPUTS_DIR/<model_name>).
        method: direct, tiling or overlapping (large images); default: overlapping windows of the
            card's tile for a model trained on tiles, else direct.
        gpu: build for an NVIDIA GPU.

    Returns:
        The path of the zip.
    """
    from coral_seg_yolo.predictor import METHODS, SegPredictor
    from quadratseg.cli import current_settings, output_path, weights_path
    from quadratseg.errors import QuadratsegError

    settings = current_settings()
    weights = weights_path(weights, settings)
    if method is None:
        method = "overlapping" if read_model_card(weights).get("tile") else "direct"
    if method not in METHODS:
        raise QuadratsegError(f"--method must be one of {', '.join(METHODS)}")
    names = SegPredictor(weights).names
    spec = function_spec(model_name, [names[i] for i in sorted(names)], weights, method, gpu)
    return str(write_nuclio_zip(spec, output_path(output, model_name, settings)))


if __name__ == "__main__":
    from quadratseg.cli import run

    run(deploy_as_zip, name="coral_seg_yolo.deploy_as_zip")
