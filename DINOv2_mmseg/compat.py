"""MMSegmentation 1.2.2 on mmcv-lite and torch >= 2.6: the two adjustments, in one place.

1. mmcv-lite ships no compiled ops, and ``import mmseg.models`` imports ``mmcv.ops`` (for
   ``point_sample`` and ``sigmoid_focal_loss``). :func:`install_mmcv_ops_stand_in` registers a
   small ``mmcv.ops`` module before mmseg is imported: ``point_sample`` in pure PyTorch, a
   ``sigmoid_focal_loss`` that fails clearly if it is ever called (mmseg's FocalLoss uses its own
   PyTorch version on CPU), and ``ModuleNotFoundError`` for every other op, which is what
   mmseg's guarded imports catch. Nothing is installed when a full mmcv (with ``mmcv._ext``) is
   present. The models this module uses (ViT + SegFormer head) need no compiled op.
2. torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine's training checkpoints
   hold its message hub (``HistoryBuffer``) and fail to load. :func:`install_trusted_checkpoint_loader`
   makes mmengine's local loader (resume, ``load_from``, ``load_checkpoint``) read files with
   ``weights_only=False``: these are the user's own training checkpoints. Weights that come from
   elsewhere (DINOv2, SAM/CoralSCoP, deployed models) are read as plain state dicts with
   ``weights_only=True`` by :func:`load_state_dict_file`.

Call :func:`import_mmseg` (idempotent) instead of importing mmseg directly.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

_STATE: dict[str, bool] = {}


def _point_sample(input: Any, points: Any, align_corners: bool = False, **kwargs: Any) -> Any:
    """mmcv's ``point_sample``: sample ``input`` (N, C, H, W) at ``points`` (N, P, 2) in 0..1 (x, y)."""
    from torch.nn import functional

    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = functional.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


def _sigmoid_focal_loss(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(
        "mmcv's compiled sigmoid_focal_loss is not available with mmcv-lite; mmseg's FocalLoss uses "
        "its PyTorch version on CPU. Install the full mmcv for the CUDA kernel."
    )


def _missing_op(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    raise ModuleNotFoundError(
        f"mmcv.ops.{name} needs mmcv's compiled extension (mmcv-lite has none); install the full "
        "mmcv, or use a model that does not need it",
        name="mmcv._ext",
    )


def install_mmcv_ops_stand_in() -> bool:
    """Register the ``mmcv.ops`` stand-in unless a compiled mmcv is installed; True when installed."""
    if "mmcv.ops" in sys.modules:
        return getattr(sys.modules["mmcv.ops"], "__quadratseg_stand_in__", False)
    import mmcv

    if importlib.util.find_spec("mmcv._ext") is not None:
        return False
    ops = types.ModuleType("mmcv.ops")
    ops.__doc__ = "quadratseg stand-in for mmcv.ops under mmcv-lite (see DINOv2_mmseg/compat.py)"
    ops.__quadratseg_stand_in__ = True  # type: ignore[attr-defined]
    ops.point_sample = _point_sample  # type: ignore[attr-defined]
    ops.sigmoid_focal_loss = _sigmoid_focal_loss  # type: ignore[attr-defined]
    ops.__getattr__ = _missing_op  # type: ignore[attr-defined]
    sys.modules["mmcv.ops"] = ops
    mmcv.ops = ops  # type: ignore[attr-defined]
    logger.debug("mmcv.ops stand-in installed (mmcv-lite)")
    return True


def _load_trusted(filename: str, map_location: Any = None) -> Any:
    import torch

    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=False)


def install_trusted_checkpoint_loader() -> None:
    """Make mmengine's local checkpoint loader read the user's training checkpoints (weights_only=False)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=_load_trusted, force=True)


def import_mmseg() -> None:
    """Import mmseg with the stand-in and loader installed, register its modules and ours."""
    if _STATE.get("ready"):
        return
    import warnings

    install_mmcv_ops_stand_in()
    with warnings.catch_warnings():
        # mmcv-lite warns that MultiScaleDeformableAttention is missing; no model here uses it
        warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
        import mmseg.models  # noqa: F401
        from mmseg.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    install_trusted_checkpoint_loader()
    import DINOv2_mmseg.plugins  # noqa: F401  (registers the DINOv2 backbone and the coral dataset)

    _STATE["ready"] = True


def load_state_dict_file(path: str | Path, what: str) -> dict[str, Any]:
    """A state dict from a weights file read with ``weights_only=True`` (safe for files from elsewhere).

    Unwraps the usual containers (``state_dict``, ``model``, ``teacher``). ``what`` names the
    weights in error messages ("DINOv2 backbone", "SAM").
    """
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise QuadratsegError(f"{what} weights {path} do not exist; give the path of a local file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise QuadratsegError(
            f"cannot read {what} weights {path} as a PyTorch state dict: {str(exc).splitlines()[0]}"
        ) from exc
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(hasattr(v, "shape") for v in obj.values()):
        raise QuadratsegError(f"{path} holds no {what} state dict (a mapping of names to tensors)")
    return obj
