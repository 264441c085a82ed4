"""Third-party and training checkpoints: nothing is unpickled beyond tensors and mmengine's own types
unless --trust-checkpoint says so, catalogued weights are checked against their sha256, and official
DINOv2 files (ViT-g with SwiGLU ``w12``/``w3``, ``_reg4`` with register tokens) load or are refused
clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from quadratseg.errors import QuadratsegError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "DINOv2_mmseg" / "configs" / "dinov2_tiny_segformer_cpu.py"


class Payload:
    """Unpickling this creates ``marker``: what any code hidden in a pickle could do instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class ForeignGetattr:
    """Unpickles as ``getattr(HistoryBuffer, "register_statistics")``: the getattr an mmengine checkpoint
    uses, on a name outside HistoryBuffer's statistics methods."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, "register_statistics"))


def _tiny_segmentor_state():
    from mmseg.registry import MODELS

    from DINOv2_mmseg.compat import import_mmseg
    from DINOv2_mmseg.runner import load_config

    import_mmseg()
    cfg = load_config(TINY)
    cfg.model.backbone.checkpoint = None
    return cfg, MODELS.build(cfg.model).state_dict(), list(cfg.classes)


def _training_checkpoint(path: Path, state: dict, classes: list[str], **extra) -> Path:
    """A checkpoint shaped as mmengine's Runner saves one: meta, state_dict and the message hub (its
    HistoryBuffer of scalars, numpy scalars in runtime info)."""
    import numpy as np
    import torch
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance(f"checkpoint-{path.stem}")
    hub.update_scalar("train/loss", 0.5)
    hub.update_scalar("val/mIoU", np.float64(41.0))
    hub.update_info("best_score", np.float32(41.0))
    meta = {"epoch": 2, "iter": 10, "dataset_meta": {"classes": classes}, **extra}
    torch.save({"meta": meta, "state_dict": state, "message_hub": hub.state_dict()}, path)
    return path


def test_a_training_checkpoint_loads_without_unrestricted_unpickling(tmp_path):
    """The Runner's own checkpoint (HistoryBuffer, numpy) loads through the segmenter with safe loading,
    and through mmengine's loader inside the project's scope; the scope ends with mmengine's loader back."""
    from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

    from DINOv2_mmseg.compat import project_checkpoint_loader
    from DINOv2_mmseg.predictor import SemanticSegmenter

    cfg, state, classes = _tiny_segmentor_state()
    path = _training_checkpoint(tmp_path / "epoch_2.pth", state, classes)
    segmenter = SemanticSegmenter(cfg, path, "cpu")
    assert segmenter.classes == classes
    mmengine_loader = CheckpointLoader._schemes[""]
    with project_checkpoint_loader():
        ckpt = _load_checkpoint(str(path), map_location="cpu")
        assert CheckpointLoader._schemes[""] is not mmengine_loader
    assert CheckpointLoader._schemes[""] is mmengine_loader
    assert ckpt["message_hub"]["log_scalars"]["val/mIoU"].mean() == 41.0
    assert float(ckpt["message_hub"]["runtime_info"]["best_score"]) == 41.0


def test_a_pickle_with_a_payload_is_refused_unless_trusted(tmp_path):
    """A segmentor checkpoint that also carries a payload: refused (the payload never runs) by the
    segmenter, by the plain export and by mmengine's loader, each naming --trust-checkpoint; with the
    flag it is unpickled fully (the payload runs: that is what the flag accepts)."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from DINOv2_mmseg.compat import project_checkpoint_loader
    from DINOv2_mmseg.predictor import SemanticSegmenter, export_plain_checkpoint

    cfg, state, classes = _tiny_segmentor_state()
    marker = tmp_path / "payload-ran"
    path = _training_checkpoint(tmp_path / "third_party.pth", state, classes, note=Payload(marker))

    def mmengine_load(trust: bool = False):
        with project_checkpoint_loader(trust):
            return _load_checkpoint(str(path), map_location="cpu")

    for load in (
        lambda: SemanticSegmenter(cfg, path, "cpu"),
        lambda: export_plain_checkpoint(path, tmp_path / "plain.pth"),
        mmengine_load,
    ):
        with pytest.raises(QuadratsegError, match="--trust-checkpoint") as refused:
            load()
        assert "(Unsupported global: GLOBAL io.open)" in str(refused.value)
        assert not marker.exists()
    assert mmengine_load(trust=True)["meta"]["epoch"] == 2
    assert marker.exists()
    marker.unlink()
    SemanticSegmenter(cfg, path, "cpu", trust_checkpoint=True)
    assert marker.exists()


def test_mmengine_getattr_is_allowed_for_history_buffer_statistics_only(tmp_path):
    """The stand-in getattr accepts what mmengine pickles (HistoryBuffer.min/max/mean/current) and
    nothing else, even on the same class."""
    import torch

    from DINOv2_mmseg.compat import load_checkpoint_file

    path = tmp_path / "getattr.pth"
    torch.save({"state_dict": {}, "meta": {"x": ForeignGetattr()}}, path)
    with pytest.raises(QuadratsegError, match="register_statistics"):
        load_checkpoint_file(path)


# --- checksums of catalogued weights -----------------------------------------------------------


def test_a_corrupted_catalogued_file_fails_its_checksum_when_loaded_or_listed(tmp_path):
    """A SAM file under its official name whose bytes are not the official ones: refused by load_sam
    with both hashes, and flagged by the weights listing; the same model under another name loads."""
    from tiny_models import tiny_sam_file

    from DINOv2_mmseg.sam_refine import load_sam
    from quadratseg.list_weights import list_weights
    from quadratseg.weights import WeightsChecksumError, file_sha256, weights_file

    official = weights_file("sam_vit_b")
    assert official.sha256 == "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    models = tmp_path / "models"
    models.mkdir()
    damaged = tiny_sam_file(models / official.filename, extra_head=False)
    with pytest.raises(WeightsChecksumError) as info:
        load_sam(damaged)
    assert file_sha256(damaged) in str(info.value) and official.sha256 in str(info.value)
    assert "copy sam_vit_b_01ec64.pth again" in str(info.value)
    with pytest.raises(WeightsChecksumError) as listed:
        list_weights(str(models))
    line = next(x for x in str(listed.value).splitlines() if official.filename in x)
    assert line.split()[0] == "present" and line.endswith("[sha256 MISMATCH]")
    renamed = damaged.rename(models / "my_sam.pth")
    _, report = load_sam(renamed)
    assert report["embed_dim"] == 32


def test_a_catalogued_file_with_the_official_hash_is_listed_as_checked(tmp_path, monkeypatch):
    """The matching case (the catalogue entry pointed at this file's hash), and a catalogued name with no
    published hash (CoralSCoP) stays unchecked."""
    import dataclasses

    from quadratseg import weights
    from quadratseg.list_weights import list_weights

    models = tmp_path / "models"
    models.mkdir()
    (models / "sam_vit_l_0b3195.pth").write_bytes(b"official bytes")
    (models / "vit_b_coralscop.pth").write_bytes(b"anything")
    entry = weights.CATALOGUE["sam_vit_l"]
    patched = dataclasses.replace(entry, sha256=weights.file_sha256(models / entry.filename))
    monkeypatch.setitem(weights._BY_FILENAME, entry.filename, patched)
    lines = list_weights(str(models)).splitlines()
    assert next(x for x in lines if "sam_vit_l_0b3195.pth" in x).endswith("[sha256 ok]")
    assert "[sha256" not in next(x for x in lines if "vit_b_coralscop.pth" in x)
    assert weights.verify_weights_file(models / "vit_b_coralscop.pth") == "unchecked"


# --- official DINOv2 file formats (key names and layouts of the released files, sizes scaled down) ---


def official_dinov2_state(dim: int, depth: int, swiglu: bool = False, registers: int = 0, grid: int = 37):
    """A state dict with the key names and layout of facebookresearch/dinov2's released
    ``dinov2_vit*14[_reg4]_pretrain.pth`` (``mask_token``, ``ls1.gamma``, ``register_tokens``; ViT-g's
    fused SwiGLU as ``mlp.w12`` (2 x hidden, dim) and ``mlp.w3`` (dim, hidden) with DINOv2's hidden size
    ``(int(4 * dim * 2 / 3) + 7) // 8 * 8``), random values; position embeddings for 518 px (37 x 37)."""
    import torch

    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    state = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, 1 + grid * grid, dim),
        "mask_token": r(1, dim),
        "patch_embed.proj.weight": r(dim, 3, 14, 14),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim),
        "norm.bias": r(dim),
    }
    if registers:
        state["register_tokens"] = r(1, registers, dim)
    hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8 if swiglu else 4 * dim
    for i in range(depth):
        b = f"blocks.{i}."
        state |= {
            b + "norm1.weight": 1 + r(dim),
            b + "norm1.bias": r(dim),
            b + "attn.qkv.weight": r(3 * dim, dim),
            b + "attn.qkv.bias": r(3 * dim),
            b + "attn.proj.weight": r(dim, dim),
            b + "attn.proj.bias": r(dim),
            b + "ls1.gamma": r(dim),
            b + "norm2.weight": 1 + r(dim),
            b + "norm2.bias": r(dim),
            b + "ls2.gamma": r(dim),
        }
        if swiglu:
            state |= {
                b + "mlp.w12.weight": r(2 * hidden, dim),
                b + "mlp.w12.bias": r(2 * hidden),
                b + "mlp.w3.weight": r(dim, hidden),
                b + "mlp.w3.bias": r(dim),
            }
        else:
            state |= {
                b + "mlp.fc1.weight": r(hidden, dim),
                b + "mlp.fc1.bias": r(hidden),
                b + "mlp.fc2.weight": r(dim, hidden),
                b + "mlp.fc2.bias": r(dim),
            }
    return state


@pytest.fixture
def small_vit_g(monkeypatch):
    """The vit_g entry of the backbone's size table scaled down (48-dim, 2 blocks, 2 heads): timm's
    ViT-g builder (SwiGLU MLP) with the official layout, small enough for CPU."""
    from DINOv2_mmseg.plugins import backbone

    monkeypatch.setitem(
        backbone.ARCHS,
        "vit_g",
        ("vit_giant_patch14_dinov2", {"embed_dim": 48, "depth": 2, "num_heads": 2}, 48, 2),
    )
    return backbone


def test_an_official_vit_g_file_loads_its_swiglu_mlp_as_dinov2_computes_it(tmp_path, small_vit_g):
    """``w12``/``w3`` land in timm's packed SwiGLU and one block's MLP gives DINOv2's own
    ``w3(silu(x1) * x2)`` with ``x1, x2 = w12(x).chunk(2)``; the whole backbone runs."""
    import torch
    from torch.nn import functional

    official = official_dinov2_state(48, 2, swiglu=True)
    path = tmp_path / "dinov2_vitg14_pretrain.pth"
    torch.save(official, path)
    backbone = small_vit_g.DINOv2(arch="vit_g", checkpoint=str(path), out_indices=(0, 1))
    backbone.init_weights()
    mlp = backbone.vit.blocks[1].mlp
    x = torch.randn(5, 48)
    x1, x2 = functional.linear(
        x, official["blocks.1.mlp.w12.weight"], official["blocks.1.mlp.w12.bias"]
    ).chunk(2, -1)
    expected = functional.linear(
        functional.silu(x1) * x2, official["blocks.1.mlp.w3.weight"], official["blocks.1.mlp.w3.bias"]
    )
    with torch.no_grad():
        assert torch.allclose(mlp(x), expected, atol=1e-6)
        assert torch.equal(backbone.vit.blocks[0].ls2.gamma, official["blocks.0.ls2.gamma"])
        maps = backbone(torch.randn(1, 3, 56, 70))
    assert [tuple(m.shape) for m in maps] == [(1, 48, 4, 5), (1, 48, 4, 5)]


def test_an_official_reg4_file_keeps_the_class_token_position_and_the_registers(tmp_path):
    """DINOv2 with registers adds position 0 to the class token and none to the registers; after loading
    a ``_reg4`` file the backbone's token sequence (class, 4 registers, patches) is DINOv2's exactly."""
    import torch

    from DINOv2_mmseg.plugins.backbone import DINOv2

    official = official_dinov2_state(48, 4, registers=4)
    path = tmp_path / "dinov2_vits14_reg4_pretrain.pth"
    torch.save(official, path)
    backbone = DINOv2(arch="tiny", checkpoint=str(path), registers=4)
    backbone.init_weights()
    patches = torch.randn(1, 37, 37, 48)
    pos = official["pos_embed"]
    expected = torch.cat(
        [
            official["cls_token"] + pos[:, :1],
            official["register_tokens"],
            patches.reshape(1, -1, 48) + pos[:, 1:],
        ],
        dim=1,
    )
    with torch.no_grad():
        tokens = backbone.vit._pos_embed(patches)
    assert tokens.shape == (1, 1 + 4 + 37 * 37, 48)
    assert torch.allclose(tokens, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("file_registers", "backbone_registers", "message"),
    [
        (4, 0, "has 4 register tokens (a _reg4 file): set registers=4"),
        (0, 4, "has no register tokens: set registers=0"),
    ],
)
def test_a_register_mismatch_is_refused_with_the_setting_to_change(
    tmp_path, file_registers, backbone_registers, message
):
    import torch

    from DINOv2_mmseg.plugins.backbone import DINOv2

    path = tmp_path / "dinov2.pth"
    torch.save(official_dinov2_state(48, 4, registers=file_registers), path)
    backbone = DINOv2(arch="tiny", checkpoint=str(path), registers=backbone_registers)
    with pytest.raises(QuadratsegError, match=re.escape(message)):
        backbone.init_weights()


def test_a_vit_g_file_with_another_mlp_layout_is_refused_by_name(tmp_path, small_vit_g):
    """The stand-in's disagreeing case: a ViT-g-sized file whose MLP is the plain fc1/fc2 of the smaller
    sizes does not fit the SwiGLU backbone and is refused with the tensors that differ."""
    import torch

    path = tmp_path / "dinov2_vitg14_pretrain.pth"
    torch.save(official_dinov2_state(48, 2, swiglu=False), path)
    backbone = small_vit_g.DINOv2(arch="vit_g", checkpoint=str(path), out_indices=(0, 1))
    with pytest.raises(
        QuadratsegError, match=r"does not fit the 'vit_g' DINOv2 backbone: .* of another shape"
    ):
        backbone.init_weights()


def test_predict_refuses_a_payload_checkpoint_unless_trusted(tmp_path):
    """The predict CLI function: the same refusal before any image is read; --trust-checkpoint loads it."""
    import cv2
    import numpy as np

    from DINOv2_mmseg.predict import predict

    _, state, classes = _tiny_segmentor_state()
    marker = tmp_path / "payload-ran"
    path = _training_checkpoint(tmp_path / "third_party.pth", state, classes, note=Payload(marker))
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "q.png"), np.full((64, 64, 3), 90, np.uint8))
    with pytest.raises(QuadratsegError, match="--trust-checkpoint"):
        predict(str(TINY), str(path), str(images), str(tmp_path / "out"), device="cpu")
    assert not marker.exists() and not (tmp_path / "out").exists()
    summary = json.loads(
        predict(str(TINY), str(path), str(images), str(tmp_path / "out"), device="cpu", trust_checkpoint=True)
    )
    assert marker.exists() and summary["images"] == 1
