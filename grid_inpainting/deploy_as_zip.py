"""CLI: package the grid-removal function ``pth-lama`` as ``nuclio.zip`` for Nuclio.

python -m grid_inpainting.deploy_as_zip pth-lama --weights models/big-lama.pt --output outputs/pth-lama

``pth-lama`` is not a CVAT model: it needs the 117 grid keypoints beside the image, which CVAT's
auto-annotation cannot send. Its ``function.yaml`` carries no CVAT ``type``, so CVAT never lists it,
and it is deployed in a Nuclio project of its own (``quadratseg``); the bridge and the pipeline call
it over HTTP (docs/nuclio.md).
"""

from __future__ import annotations

from pathlib import Path

from quadratseg.errors import QuadratsegError
from quadratseg.nuclio import BASE_PIP, FunctionSpec, write_nuclio_zip

PIP = (*BASE_PIP, "simple-lama-inpainting==0.1.0")


def build_spec(
    model_name: str = "pth-lama", weights: str | None = None, gpu: bool = False, backend: str = "lama"
) -> FunctionSpec:
    """The function spec: the handler, the core and this module's code, and ``big-lama.pt``."""
    if backend not in ("lama", "opencv-telea", "opencv-ns"):
        raise QuadratsegError(f"--backend must be lama, opencv-telea or opencv-ns, got {backend!r}")
    files: dict[str, Path | bytes] = {}
    if backend == "lama":
        if not weights:
            raise QuadratsegError(
                "pth-lama needs LaMa weights: pass --weights path/to/big-lama.pt (TorchScript), "
                "or package the OpenCV fallback explicitly with --backend opencv-telea"
            )
        files["big-lama.pt"] = Path(weights)
    return FunctionSpec(
        name=model_name,
        display_name="Grid removal (LaMa)",
        description="Removes the 9 x 13 string grid of a warped quadrat from its 117 keypoints",
        labels=[],
        main_py=Path(__file__).parent / "nuclio" / "main.py",
        files=files,
        packages=("quadratseg", "grid_inpainting"),
        pip=PIP,
        gpu=gpu,
        env={"QUADRATSEG_INPAINT_BACKEND": backend},
        kind=None,
    )


def deploy_as_zip(
    model_name: str = "pth-lama",
    weights: str | None = None,
    output: str | None = None,
    gpu: bool = False,
    backend: str = "lama",
) -> str:
    """Write nuclio.zip for the grid-removal function.

    Args:
        model_name: Nuclio function name (upstream: pth-lama).
        weights: LaMa TorchScript file, stored as big-lama.pt (required for --backend lama; default:
            LAMA_MODEL; a relative path missing here is looked up in QUADRATSEG_MODELS_DIR).
        output: folder (or .zip path) to write (default: QUADRATSEG_OUTPUTS_DIR/MODEL_NAME).
        gpu: build for an NVIDIA GPU.
        backend: lama, or an explicit OpenCV fallback (opencv-telea, opencv-ns) needing no weights;
            every answer names the backend that made it.

    Returns:
        The path of the zip.
    """
    from quadratseg.cli import current_settings, output_path, weights_path

    settings = current_settings()
    weights = weights_path(weights, settings) or (str(settings.lama_model) if settings.lama_model else None)
    spec = build_spec(model_name, weights, gpu, backend)
    return str(write_nuclio_zip(spec, output_path(output, model_name, settings)))


if __name__ == "__main__":
    from quadratseg.cli import run

    run(deploy_as_zip, name="grid_inpainting.deploy_as_zip")
