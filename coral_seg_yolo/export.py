"""CLI: export a trained YOLO-seg model to ONNX (``predict`` and the handler accept the .onnx file).

python -m coral_seg_yolo.export best.pt [--imgsz 1920]
"""

from __future__ import annotations

from pathlib import Path

from quadratseg.errors import QuadratsegError


def export(weights: str, imgsz: int | None = None, simplify: bool = True) -> str:
    """Export ``weights`` to ONNX beside it (onnxslim is installed, so nothing is fetched).

    Args:
        weights: trained .pt model (a relative path missing here is looked up in QUADRATSEG_MODELS_DIR).
        imgsz: export size (default: the training size).
        simplify: simplify the graph with onnxslim.

    Returns:
        The path of the .onnx file.
    """
    from quadratseg.cli import weights_path
    from quadratseg.yolo_train import build_model

    weights = weights_path(weights)
    if not str(weights).endswith(".pt"):
        raise QuadratsegError(f"{weights}: export takes a trained .pt model")
    model = build_model(weights)
    args = {"format": "onnx", "simplify": simplify}
    if imgsz:
        args["imgsz"] = imgsz
    path = Path(model.export(**args))
    return str(path)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(export, name="coral_seg_yolo.export")
