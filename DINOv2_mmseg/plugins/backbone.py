"""The DINOv2 ViT/14 backbone for MMSeg: multi-level feature maps from intermediate blocks.

The ViT itself is timm's implementation of the DINOv2 architecture (same parameter names as
the official ``dinov2_vit*14_pretrain.pth`` files); it is built with random weights and
loads an official checkpoint only from a local path (``checkpoint=``). Nothing is downloaded.

``forward`` returns, like DINOv2's ``get_intermediate_layers(x, n, reshape=True, norm=True)``,
one (B, C, H/14, W/14) map per selected block, in block order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from DINOv2_mmseg.compat import load_state_dict_file
from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

PATCH = 14
# arch -> (timm model name, extra timm kwargs, embed dim, depth); "tiny" is ours, for CPU tests/demo.
ARCHS: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "vit_s": ("vit_small_patch14_dinov2", {}, 384, 12),
    "vit_b": ("vit_base_patch14_dinov2", {}, 768, 12),
    "vit_l": ("vit_large_patch14_dinov2", {}, 1024, 24),
    "vit_g": ("vit_giant_patch14_dinov2", {}, 1536, 40),
    "tiny": ("vit_small_patch14_dinov2", {"embed_dim": 48, "depth": 4, "num_heads": 2}, 48, 4),
}
DIM_TO_ARCH = {dim: arch for arch, (_, _, dim, _) in ARCHS.items()}


def default_out_indices(depth: int, n: int = 4) -> tuple[int, ...]:
    """The last block of each of ``n`` equal stages, e.g. (2, 5, 8, 11) for 12 blocks."""
    return tuple(depth * (k + 1) // n - 1 for k in range(n))


def build_dinov2_vit(arch: str, img_size: int = 518, registers: int = 0, drop_path_rate: float = 0.0) -> Any:
    """A DINOv2 ViT/14 with random weights (timm), any input size (position embeddings interpolated)."""
    import timm

    if arch not in ARCHS:
        raise QuadratsegError(f"unknown DINOv2 arch {arch!r}; choose one of {', '.join(ARCHS)}")
    name, extra, _, _ = ARCHS[arch]
    if registers:
        if registers != 4:
            raise QuadratsegError("DINOv2 comes with 0 or 4 register tokens")
        name = name.replace("_patch14_", "_patch14_reg4_")
    return timm.create_model(
        name,
        pretrained=False,
        img_size=img_size,
        dynamic_img_size=True,
        dynamic_img_pad=True,
        drop_path_rate=drop_path_rate,
        **extra,
    )


def load_dinov2_weights(vit: Any, path: str | Path, arch: str) -> None:
    """Load an official DINOv2 checkpoint file into ``vit``; fail clearly on a mismatched file.

    The released layouts are converted by timm's ``checkpoint_filter_fn``: ViT-g's fused SwiGLU
    (``mlp.w12``, ``mlp.w3``) becomes timm's packed SwiGLU (``mlp.fc1``, ``mlp.fc2``), and a ``_reg4``
    file's ``register_tokens`` become ``reg_token`` with the class token's position folded into it
    (timm's register models give prefix tokens no position embedding). Size, patch and register count
    are checked first, each naming the setting to change.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = load_state_dict_file(path, "DINOv2 backbone")
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    if "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise QuadratsegError(
            f"{path} is not a DINOv2 ViT checkpoint (no cls_token / patch_embed.proj.weight); expected "
            "an official file such as dinov2_vitb14_pretrain.pth"
        )
    dim = int(state["cls_token"].shape[-1])
    expected = ARCHS[arch][2]
    if dim != expected:
        hint = f" (it looks like arch={DIM_TO_ARCH[dim]!r})" if dim in DIM_TO_ARCH else ""
        raise QuadratsegError(
            f"{path} is a ViT with embedding size {dim}, the backbone is {arch!r} ({expected}){hint}"
        )
    patch = tuple(state["patch_embed.proj.weight"].shape[-2:])
    if patch != (PATCH, PATCH):
        raise QuadratsegError(f"{path} has {patch} patches; DINOv2 uses 14 x 14")
    file_registers = next((int(state[k].shape[1]) for k in ("register_tokens", "reg_token") if k in state), 0)
    own_registers = int(getattr(vit, "num_reg_tokens", 0))
    if file_registers != own_registers:
        raise QuadratsegError(
            f"{path} has {file_registers} register tokens (a _reg4 file): set registers={file_registers} "
            "in model.backbone"
            if file_registers
            else f"{path} has no register tokens: set registers=0 in model.backbone, or give a _reg4 file"
        )
    state = checkpoint_filter_fn(state, vit)
    own = vit.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise QuadratsegError(
            f"{path} does not fit the {arch!r} DINOv2 backbone: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(wrong)} of another shape (e.g. {wrong[:3]}); "
            "check arch and registers against the file's name (vits14/vitb14/vitl14/vitg14, _reg4)"
        )
    vit.load_state_dict(state, strict=True)
    logger.info("loaded DINOv2 %s weights from %s", arch, path)


@MODELS.register_module()
class DINOv2(BaseModule):
    """DINOv2 ViT/14 backbone returning ``len(out_indices)`` feature maps (B, C, H/14, W/14).

    Args:
        arch: vit_s, vit_b, vit_l, vit_g (official sizes) or tiny (48-dim, 4 blocks; tests, demo).
        out_indices: blocks whose outputs are returned (default: last of four equal stages).
        freeze_vit: keep the ViT's weights fixed (and in eval mode); only the head trains.
        checkpoint: local path of an official DINOv2 checkpoint (``dinov2_vitb14_pretrain.pth``).
        img_size: size the position embeddings are stored for (518 in DINOv2); any input size works.
        registers: 0, or 4 for the ``_reg4`` checkpoints.
        norm: apply the final LayerNorm to every returned map, as DINOv2's dense heads do.
        drop_path_rate: stochastic depth while training.
    """

    def __init__(
        self,
        arch: str = "vit_b",
        out_indices: tuple[int, ...] | None = None,
        freeze_vit: bool = False,
        checkpoint: str | None = None,
        img_size: int = 518,
        registers: int = 0,
        norm: bool = True,
        drop_path_rate: float = 0.0,
        init_cfg: dict | None = None,
    ):
        super().__init__(init_cfg=init_cfg)
        self.arch = arch
        self.vit = build_dinov2_vit(arch, img_size, registers, drop_path_rate)
        depth = ARCHS[arch][3]
        self.out_indices = tuple(out_indices) if out_indices is not None else default_out_indices(depth)
        bad = [i for i in self.out_indices if not 0 <= i < depth]
        if bad:
            raise QuadratsegError(f"out_indices {bad} outside the {depth} blocks of {arch!r}")
        self.embed_dim = ARCHS[arch][2]
        self.freeze_vit = freeze_vit
        self.checkpoint = checkpoint
        self.norm = norm
        if freeze_vit:
            for p in self.vit.parameters():
                p.requires_grad = False

    def init_weights(self) -> None:
        """Load the DINOv2 checkpoint when one is given (random weights stay otherwise)."""
        if self.checkpoint:
            load_dinov2_weights(self.vit, self.checkpoint, self.arch)
        self._is_init = True

    def train(self, mode: bool = True) -> DINOv2:
        """A frozen ViT stays in eval mode (no dropout / stochastic depth)."""
        super().train(mode)
        if self.freeze_vit:
            self.vit.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Images (B, 3, H, W), normalized -> feature maps (B, C, ceil(H/14), ceil(W/14)) per out index."""
        maps = self.vit.forward_intermediates(
            x, indices=list(self.out_indices), norm=self.norm, output_fmt="NCHW", intermediates_only=True
        )
        return tuple(maps)
