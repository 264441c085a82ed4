"""MMSegmentation 1.2.2 on mmcv-lite and torch >= 2.6: the two adjustments, in one place.

1. mmcv-lite ships no compiled ops, and ``import mmseg.models`` imports ``mmcv.ops`` (for
   ``point_sample`` and ``sigmoid_focal_loss``). :func:`install_mmcv_ops_stand_in` registers a
   small ``mmcv.ops`` module before mmseg is imported: ``point_sample`` in pure PyTorch, a
   ``sigmoid_focal_loss`` that fails clearly if it is ever called (mmseg's FocalLoss uses its own
   PyTorch version on CPU), and ``ModuleNotFoundError`` for every other op, which is what
   mmseg's guarded imports catch. Nothing is installed when a full mmcv (with ``mmcv._ext``) is
   present. The models this module uses (ViT + SegFormer head) need no compiled op.
2. torch >= 2.6 loads checkpoints with ``weights_only=True``; mmengine's training checkpoints
   also hold its message hub (``HistoryBuffer``, numpy arrays and scalars). :func:`load_checkpoint_file`
   reads them with ``weights_only=True`` and exactly those types allowed
   (:func:`mmengine_checkpoint_globals`), so the user's own training checkpoints load without
   unrestricted unpickling. A file that needs anything else is refused, naming ``--trust-checkpoint``
   (the only way to unpickle a file fully, which can run code it holds). mmengine's own loader (resume,
   ``load_from``) reads through the same function inside :func:`project_checkpoint_loader`, which the
   train and test CLIs open around their Runner; outside it mmengine's loader is left as it is. Weights
   that come from elsewhere (DINOv2, SAM/CoralSCoP) are plain state dicts, read by
   :func:`load_state_dict_file` with ``weights_only=True`` and their catalogue checksum checked.

Call :func:`import_mmseg` (idempotent) instead of importing mmseg directly.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import logging
import pickle
import sys
import types
from collections.abc import Iterator
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


TRUST_OPTION = "--trust-checkpoint"
# what torch.load raises on a file that is not a checkpoint at all (a text file, a truncated zip)
NOT_A_CHECKPOINT = (RuntimeError, EOFError, ValueError, IndexError, KeyError, TypeError)
# HistoryBuffer keeps its statistics methods in the pickle as getattr(HistoryBuffer, name)
HISTORY_BUFFER_METHODS = ("min", "max", "mean", "current")
_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("quadratseg_trust_checkpoint", default=False)


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as an mmengine checkpoint uses it (a statistics method of HistoryBuffer), nothing else."""
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"getattr({obj!r}, {name!r}) is not part of an mmengine checkpoint")


def mmengine_checkpoint_globals() -> list[Any]:
    """What an mmengine training checkpoint pickles besides tensors: the message hub's HistoryBuffer
    (with its statistics methods), numpy arrays, dtypes and scalars (numpy 1 and 2 names)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = sorted({type(np.dtype(c)) for c in np.typecodes["All"] if c not in "OV"}, key=str)
    return [
        HistoryBuffer,
        (_history_buffer_getattr, "builtins.getattr"),
        np.ndarray,
        np.dtype,
        *dtypes,
        multiarray._reconstruct,
        multiarray.scalar,
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
    ]


def _unpickling_reason(exc: Exception) -> str:
    """The line of torch's weights-only error that says what was refused."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    tail = text.split(marker, 1)[1] if marker in text else text
    line = next((line.strip() for line in tail.splitlines() if line.strip()), "")
    return line.split(" was not an allowed global")[0].split(". Please")[0][:200]


def load_checkpoint_file(
    path: str | Path, what: str = "checkpoint", trust: bool = False, map_location: Any = "cpu"
) -> Any:
    """A checkpoint file read without running code: ``weights_only=True`` with the types of an mmengine
    training checkpoint allowed (:func:`mmengine_checkpoint_globals`).

    ``trust=True`` (``--trust-checkpoint``) reads a file that needs more with full unpickling, which can
    run code the file holds; without it such a file is a :class:`QuadratsegError` naming the flag.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise QuadratsegError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise QuadratsegError(
                f"{what} {path} holds Python objects beyond a plain or mmengine checkpoint "
                f"({_unpickling_reason(exc)}); it was not loaded. Only if it is your own file or comes from "
                f"a source you trust, pass {TRUST_OPTION} to unpickle it fully (this can run code it holds)"
            ) from exc
        logger.warning("%s %s unpickled fully (%s): it can run code it holds", what, path, TRUST_OPTION)
        return torch.load(path, map_location=map_location, weights_only=False)
    except NOT_A_CHECKPOINT as exc:
        raise QuadratsegError(f"cannot read {what} {path}: {str(exc).splitlines()[0]}") from exc


def _load_for_mmengine(filename: str, map_location: Any = None) -> Any:
    """mmengine's local loader inside :func:`project_checkpoint_loader`."""
    return load_checkpoint_file(filename, "checkpoint", trust=_TRUST.get(), map_location=map_location)


@contextlib.contextmanager
def project_checkpoint_loader(trust: bool = False) -> Iterator[None]:
    """mmengine reads local checkpoints (resume, ``load_from``) with :func:`load_checkpoint_file` inside
    this block; its own loader is back afterwards. ``trust``: ``--trust-checkpoint``."""
    from mmengine.runner.checkpoint import CheckpointLoader

    saved = dict(CheckpointLoader._schemes)
    token = _TRUST.set(trust)
    CheckpointLoader.register_scheme(prefixes="", loader=_load_for_mmengine, force=True)
    try:
        yield
    finally:
        CheckpointLoader._schemes.clear()
        CheckpointLoader._schemes.update(saved)
        _TRUST.reset(token)


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
    import DINOv2_mmseg.plugins  # noqa: F401  (registers the DINOv2 backbone and the coral dataset)

    _STATE["ready"] = True


def load_state_dict_file(path: str | Path, what: str) -> dict[str, Any]:
    """A state dict from a weights file read with ``weights_only=True`` (safe for files from elsewhere),
    after its sha256 is checked when the weights catalogue knows it
    (:func:`quadratseg.weights.verify_weights_file`).

    Unwraps the usual containers (``state_dict``, ``model``, ``teacher``). ``what`` names the
    weights in error messages ("DINOv2 backbone", "SAM").
    """
    import torch

    from quadratseg.weights import verify_weights_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise QuadratsegError(f"{what} weights {path} do not exist; give the path of a local file")
    verify_weights_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, *NOT_A_CHECKPOINT) as exc:
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
