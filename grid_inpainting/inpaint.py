"""Inpainting backends and the one function that removes a grid: :func:`remove_grid`.

- ``lama``: LaMa through simple-lama-inpainting, from a local TorchScript file (``LAMA_MODEL``);
  on CUDA when available; images of one size are inpainted in batches with the library's own
  preprocessing (pad to a multiple of 8), and the padded output is cropped back.
- ``opencv-telea`` / ``opencv-ns``: OpenCV's Telea or Navier-Stokes inpainting. A fallback only:
  used when the user selects it, or when no LaMa weights are present and the settings allow it
  (``QUADRATSEG_ALLOW_OPENCV_INPAINT``). It is logged, and every output records its backend.

Images are uint8 RGB (H, W, 3); masks bool (H, W), True where the grid is.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.settings import Settings

logger = logging.getLogger(__name__)
BACKENDS = ("auto", "lama", "opencv-telea", "opencv-ns")
# the demo's chain removes grids with it (no LaMa weights are shipped) and its segmentation models
# learn from photos it cleaned (grid_inpainting.demo.cleaned_for_training)
DEMO_CHAIN_BACKEND = "opencv-telea"


class InpaintBackend(Protocol):
    """Fills the masked pixels of RGB images."""

    name: str

    def inpaint_batch(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        """Inpaint each (H, W, 3) uint8 image where its (H, W) bool mask is True."""


@dataclass
class OpenCVBackend:
    """OpenCV inpainting (``telea`` or ``ns``) with a radius in px."""

    method: str = "telea"
    radius: float = 5.0

    @property
    def name(self) -> str:
        return f"opencv-{self.method}"

    def inpaint_batch(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
        return [
            cv2.inpaint(img, m.astype(np.uint8), self.radius, flag)
            for img, m in zip(images, masks, strict=True)
        ]


@contextlib.contextmanager
def _lama_model_env(path: Path) -> Iterator[None]:
    """simple-lama's own switch: ``LAMA_MODEL`` set to ``path`` while ``SimpleLama`` loads, then
    restored. The only environment access of library code, for that third-party API; the project's
    own LAMA_MODEL setting reaches this module as an argument."""
    previous = os.environ.get("LAMA_MODEL")
    os.environ["LAMA_MODEL"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("LAMA_MODEL", None)
        else:
            os.environ["LAMA_MODEL"] = previous


class LamaBackend:
    """LaMa via simple-lama-inpainting's ``SimpleLama``, loaded from a local TorchScript file only."""

    name = "lama"

    def __init__(self, model_path: str | Path, device: str = "auto", batch_size: int = 4):
        import torch
        from simple_lama_inpainting import SimpleLama

        path = Path(model_path)
        if not path.is_file():
            raise QuadratsegError(
                f"LaMa weights {path} do not exist; set LAMA_MODEL in .env to a local big-lama.pt "
                "(TorchScript), or choose --backend opencv-telea"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            # SimpleLama downloads unless LAMA_MODEL names an existing file: it always does here
            with _lama_model_env(path):
                self.lama = SimpleLama(device=torch.device(device))
        except (RuntimeError, ValueError) as exc:
            raise QuadratsegError(
                f"LaMa weights {path} cannot be loaded as a TorchScript model ({str(exc).splitlines()[0]}); "
                "check the file, or set LAMA_MODEL to the big-lama.pt TorchScript export"
            ) from None
        self.device = device
        self.batch_size = max(1, int(batch_size))

    def inpaint_batch(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        import torch
        from simple_lama_inpainting.utils import prepare_img_and_mask

        results: list[np.ndarray | None] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            by_size.setdefault(img.shape, []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prepared = [
                    prepare_img_and_mask(images[i], masks[i].astype(np.uint8) * 255, self.lama.device)
                    for i in chunk
                ]
                batch_images = torch.cat([p[0] for p in prepared]) if len(prepared) > 1 else prepared[0][0]
                batch_masks = torch.cat([p[1] for p in prepared]) if len(prepared) > 1 else prepared[0][1]
                with torch.inference_mode():
                    out = self.lama.model(batch_images, batch_masks)
                    # to uint8 in place before the (strided) HWC permute: 10x cheaper at 1920 px
                    out = (
                        out.mul_(255)
                        .clamp_(0, 255)
                        .round_()
                        .to(torch.uint8)
                        .permute(0, 2, 3, 1)
                        .cpu()
                        .numpy()
                    )
                for k, i in enumerate(chunk):
                    h, w = images[i].shape[:2]
                    results[i] = np.ascontiguousarray(out[k, :h, :w])  # crop the padding back off
        return [r for r in results if r is not None]


def select_backend(
    backend: str,
    settings: Settings,
    lama_model: str | Path | None = None,
    device: str = "auto",
    option: str = "--backend",
    weights_option: str | None = "--lama-model",
) -> Any:
    """The backend to use, by name; ``auto`` is LaMa when weights exist, else OpenCV only if allowed.

    ``option`` and ``weights_option`` name the calling command's options in the messages (the
    backend, and the LaMa weights file; None when the command takes the weights from the settings
    alone).

    Raises:
        QuadratsegError: an unknown name, ``lama`` without LaMa weights, or ``auto`` without LaMa
            weights while OpenCV is not allowed.
    """
    if backend not in BACKENDS:
        raise QuadratsegError(f"{option} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    model = Path(lama_model) if lama_model else settings.lama_model
    if backend == "lama" or (backend == "auto" and model is not None):
        if model is None:
            raise QuadratsegError(missing_lama_message(option, weights_option))
        return LamaBackend(model, device if device != "auto" else settings.device)
    if backend == "auto":
        if not settings.allow_opencv_inpaint:
            raise QuadratsegError(
                "no LaMa weights (LAMA_MODEL is not set): set LAMA_MODEL to a local big-lama.pt, choose "
                f"{option} opencv-telea explicitly, or set QUADRATSEG_ALLOW_OPENCV_INPAINT=true to fall back"
            )
        logger.warning("no LaMa weights: falling back to OpenCV Telea inpainting (allowed by the settings)")
        return OpenCVBackend("telea")
    return OpenCVBackend(backend.split("-", 1)[1])


def missing_lama_message(option: str = "--backend", weights_option: str | None = "--lama-model") -> str:
    """What to do when ``lama`` is chosen without LaMa weights, in the options of the command.

    Examples:
        >>> missing_lama_message("--inpaint", None)  # doctest: +ELLIPSIS
        '--inpaint lama needs LaMa weights: set LAMA_MODEL (in .env or the environment) to ...'
    """
    given = f", or pass {weights_option} FILE" if weights_option else ""
    return (
        f"{option} lama needs LaMa weights: set LAMA_MODEL (in .env or the environment) to a local "
        f"big-lama.pt, or put big-lama.pt in QUADRATSEG_MODELS_DIR{given}; or choose {option} opencv-telea"
    )


@dataclass
class GridRemoval:
    """A cleaned image with the mask that was inpainted and the backend that made it."""

    image: np.ndarray
    mask: np.ndarray
    backend: str
    line_width: float


def remove_grid(
    images: list[np.ndarray],
    keypoints: list[np.ndarray],
    backend: Any,
    line_width: float | None = None,
    dilation: int = 0,
    missing: str = "interpolate",
    estimate_width: bool = False,
) -> list[GridRemoval]:
    """Remove the grid from RGB images given their 117 keypoints (pixels, NaN where missing).

    Raises:
        QuadratsegError: a keypoint array of the wrong size, points outside the image, or an
            image that is not (H, W, 3) uint8.
    """
    from grid_inpainting.masks import default_line_width, estimate_line_width, grid_mask

    if len(images) != len(keypoints):
        raise QuadratsegError(f"{len(images)} images but {len(keypoints)} keypoint sets")
    masks, widths = [], []
    for i, (image, kp) in enumerate(zip(images, keypoints, strict=True)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise QuadratsegError(f"image {i} must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
        size = (image.shape[1], image.shape[0])
        width = line_width
        if width is None and estimate_width:
            width = estimate_line_width(image, kp) * 1.4  # cover the blurred edges of the string
        width = width if width is not None else default_line_width(size)
        masks.append(grid_mask(kp, size, width, dilation, missing))
        widths.append(float(width))
    cleaned = backend.inpaint_batch(images, masks)
    return [GridRemoval(c, m, backend.name, w) for c, m, w in zip(cleaned, masks, widths, strict=True)]
