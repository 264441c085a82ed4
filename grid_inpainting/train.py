"""CLI: fine-tune LaMa on quadrat photos the way LaMa is trained, self-supervised.

    python -m grid_inpainting.train DATA OUT --lama-model big-lama.pt [--steps 500] [--crop 256]

``DATA`` is what ``prepare_data`` writes (``images/`` and ``unknown/``), or any folder of
grid-free images. Each step takes random crops, draws grid-shaped masks on them (two families of
strings with random spacing, rotation, width and a perspective-like change of spacing), asks the
network to fill them, and learns from the pixels it hid:

- loss = L1 inside the drawn mask + ``perceptual_weight`` x feature L1 of the composited crop
  (a torchvision ``vgg16`` or ``resnet18`` from a local state-dict file, ``--perceptual-weights``;
  without one the perceptual term is off, logged and recorded in ``config.json``);
- pixels under the real strings (``unknown/``, the grid mask drawn twice as wide) are never a
  target: they are left out of the loss wherever they fall.

Starts from a local TorchScript LaMa (the ``big-lama.pt`` that SimpleLama loads) and saves the same
kind of file: ``OUT/big-lama.pt`` (best validation loss) and ``OUT/last.pt`` load in ``remove_grid``,
``evaluate`` and the ``pth-lama`` zip like the original. ``OUT/metrics.csv`` has the losses,
``OUT/config.json`` the resolved options, ``OUT/train_state.pt`` what ``--resume`` needs.
Nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.atomic import atomic_write_bytes
from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

PERCEPTUAL_ARCHS = ("vgg16", "resnet18")


@dataclass
class TrainConfig:
    """Resolved options of a fine-tune (written to ``config.json``)."""

    data: str
    out: str
    lama_model: str
    steps: int = 500
    batch: int = 4
    crop: int = 256
    lr: float = 1e-5
    perceptual_weights: str | None = None
    perceptual_arch: str = "vgg16"
    perceptual_weight: float = 0.1
    val_every: int = 50
    val_batches: int = 2
    seed: int = 0
    device: str = "cpu"
    perceptual: str = ""  # "on (...)" or "off: why"


def random_string_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Bool (H, W) mask of two crossing families of strings (module docstring): spacing 1/4 to 2/3 of
    the crop, rotation +-15 degrees, width 2 to 5 % of the spacing plus 2 px, spacing changing by up
    to 30 % across the crop (perspective)."""
    mask = np.zeros((height, width), np.uint8)
    angle = np.deg2rad(rng.uniform(-15, 15))
    size = max(height, width)
    thickness = 0
    for family in range(2):
        theta = angle + family * np.pi / 2
        normal = np.array([np.cos(theta), np.sin(theta)])
        direction = np.array([-normal[1], normal[0]])
        spacing = rng.uniform(0.25, 0.67) * size
        thickness = max(thickness, round(rng.uniform(0.02, 0.05) * spacing + 2))
        growth = rng.uniform(-0.3, 0.3) / size  # spacing changes along the normal
        centre = np.array([width / 2, height / 2])
        offset = rng.uniform(0, spacing)
        t = -size + offset
        while t < size:
            p = centre + t * normal
            a, b = p - 2 * size * direction, p + 2 * size * direction
            cv2.line(mask, tuple(int(v) for v in a), tuple(int(v) for v in b), 1, thickness)
            t += spacing * (1 + growth * t)
    return mask.astype(bool)


def list_training_images(data: Path) -> list[tuple[Path, Path | None]]:
    """(image, unknown-pixel mask or None) pairs of ``data`` (prepare_data's layout, or a flat folder)."""
    from quadratseg.images import list_images

    images_dir = data / "images" if (data / "images").is_dir() else data
    pairs = []
    for path in list_images(images_dir):
        unknown = data / "unknown" / f"{path.stem}.png"
        pairs.append((path, unknown if unknown.is_file() else None))
    if not pairs:
        raise QuadratsegError(
            f"no training image under {images_dir}; write them with grid_inpainting.prepare_data"
        )
    return pairs


def load_sample(
    pair: tuple[Path, Path | None], crop: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """(image float32 (3, c, c) 0-1, hidden mask (1, c, c), loss weight (1, c, c)) of one random crop."""
    from quadratseg.images import read_image_rgb

    image = read_image_rgb(pair[0])
    unknown = (
        cv2.imread(str(pair[1]), cv2.IMREAD_GRAYSCALE) > 0
        if pair[1] is not None
        else np.zeros(image.shape[:2], bool)
    )
    h, w = image.shape[:2]
    if min(h, w) < crop:  # small images are scaled up to the crop
        scale = crop / min(h, w)
        size = (max(crop, round(w * scale)), max(crop, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        unknown = cv2.resize(unknown.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        h, w = image.shape[:2]
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    image = image[y : y + crop, x : x + crop]
    known = ~unknown[y : y + crop, x : x + crop]
    hidden = random_string_mask(crop, crop, rng) & known
    return (
        image.transpose(2, 0, 1).astype(np.float32) / 255.0,
        hidden[None].astype(np.float32),
        (hidden & known)[None].astype(np.float32),
    )


def make_batch(pairs: list, cfg: TrainConfig, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """A batch of ``cfg.batch`` random samples as torch tensors on ``cfg.device``."""
    import torch

    picks = rng.integers(0, len(pairs), cfg.batch)
    samples = [load_sample(pairs[int(i)], cfg.crop, rng) for i in picks]
    return tuple(torch.from_numpy(np.stack(part)).to(cfg.device) for part in zip(*samples, strict=True))


def perceptual_network(cfg: TrainConfig) -> Any | None:
    """A frozen feature extractor from local weights, or None (the term is off and ``cfg.perceptual``
    says why)."""
    import torch
    import torchvision

    if not cfg.perceptual_weights:
        cfg.perceptual = "off: no --perceptual-weights given (L1 only)"
        logger.warning("perceptual loss %s", cfg.perceptual)
        return None
    if cfg.perceptual_arch not in PERCEPTUAL_ARCHS:
        raise QuadratsegError(f"--perceptual-arch must be one of {', '.join(PERCEPTUAL_ARCHS)}")
    path = Path(cfg.perceptual_weights)
    if not path.is_file():
        raise QuadratsegError(f"--perceptual-weights {path} does not exist (a torchvision state dict file)")
    model = getattr(torchvision.models, cfg.perceptual_arch)(weights=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, KeyError) as exc:
        raise QuadratsegError(
            f"{path} is not a torchvision {cfg.perceptual_arch} state dict ({str(exc).splitlines()[0]})"
        ) from None
    if cfg.perceptual_arch == "vgg16":
        features = model.features[:16]  # to relu3_3
    else:
        features = torch.nn.Sequential(*list(model.children())[:6])  # to layer2
    features.eval().requires_grad_(False).to(cfg.device)
    cfg.perceptual = f"on ({cfg.perceptual_arch} from {path.name}, weight {cfg.perceptual_weight})"
    return features


def losses(model: Any, batch: tuple, features: Any | None, cfg: TrainConfig) -> tuple[Any, Any]:
    """(total loss, masked L1) of one batch."""
    import torch

    image, hidden, weight = batch
    output = model(image * (1 - hidden), hidden)
    masked_l1 = (torch.abs(output - image) * weight).sum() / (3 * weight.sum()).clamp(min=1.0)
    total = masked_l1
    if features is not None:
        mean = torch.tensor([0.485, 0.456, 0.406], device=image.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=image.device).view(1, 3, 1, 1)
        composite = output * hidden + image * (1 - hidden)
        total = total + cfg.perceptual_weight * torch.nn.functional.l1_loss(
            features((composite - mean) / std), features((image - mean) / std)
        )
    return total, masked_l1


def load_scripted(path: Path, device: str) -> Any:
    """A TorchScript LaMa with trainable parameters."""
    import torch

    if not path.is_file():
        raise QuadratsegError(f"LaMa model {path} does not exist; give a local big-lama.pt (TorchScript)")
    try:
        model = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        raise QuadratsegError(f"{path} is not a TorchScript model ({str(exc).splitlines()[0]})") from None
    params = list(model.parameters())
    if not params:
        raise QuadratsegError(
            f"{path} has no trainable parameters (a frozen TorchScript export?): "
            "fine-tune from an unfrozen one"
        )
    for p in params:
        p.requires_grad_(True)
    return model


def _save_scripted(model: Any, path: Path) -> None:
    """Save a TorchScript module to ``path`` whole (serialised in memory, then one atomic write)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.jit.save(model, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def fine_tune(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run the fine-tune (module docstring); a summary with the validation loss before and after."""
    import torch

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_file = out / "train_state.pt"
    pairs = list_training_images(Path(cfg.data))
    torch.manual_seed(cfg.seed)
    start_step, best = 0, float("inf")
    if resume:
        if not state_file.is_file() or not (out / "last.pt").is_file():
            raise QuadratsegError(f"nothing to resume in {out} (no train_state.pt / last.pt)")
        model = load_scripted(out / "last.pt", cfg.device)
    else:
        model = load_scripted(Path(cfg.lama_model), cfg.device)
    features = perceptual_network(cfg)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    if resume:
        state = torch.load(state_file, map_location=cfg.device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        start_step, best = int(state["step"]), float(state["best"])
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
    val_rng = np.random.default_rng(cfg.seed + 1_000_003)
    validation = [make_batch(pairs, cfg, val_rng) for _ in range(cfg.val_batches)]

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            value = float(np.mean([losses(model, b, None, cfg)[1].item() for b in validation]))
        model.train()
        return value

    initial = validate()
    metrics_path = out / "metrics.csv"
    new_file = not (resume and metrics_path.is_file())
    rng = np.random.default_rng(cfg.seed + start_step)
    started = time.perf_counter()
    with metrics_path.open("w" if new_file else "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(["step", "loss", "masked_l1", "val_masked_l1"])
            writer.writerow([start_step, "", "", round(initial, 6)])
        model.train()
        for step in range(start_step + 1, cfg.steps + 1):
            total, masked_l1 = losses(model, make_batch(pairs, cfg, rng), features, cfg)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            val = validate() if step % cfg.val_every == 0 or step == cfg.steps else None
            writer.writerow(
                [
                    step,
                    round(total.item(), 6),
                    round(masked_l1.item(), 6),
                    "" if val is None else round(val, 6),
                ]
            )
            if val is not None:
                handle.flush()
                logger.info(
                    "step %d/%d: masked L1 %.4f (validation %.4f)", step, cfg.steps, masked_l1.item(), val
                )
                _save_scripted(model, out / "last.pt")
                if val < best:
                    best = val
                    _save_scripted(model, out / "big-lama.pt")
                torch.save({"optimizer": optimizer.state_dict(), "step": step, "best": best}, state_file)
    final = validate()
    return {
        "steps": cfg.steps,
        "resumed_from": start_step if resume else None,
        "val_masked_l1_before": round(initial, 6),
        "val_masked_l1_after": round(final, 6),
        "best_val_masked_l1": round(best, 6),
        "perceptual": cfg.perceptual,
        "seconds": round(time.perf_counter() - started, 2),
        "model": str(out / "big-lama.pt"),
    }


def train(
    data: str,
    out_dir: str,
    lama_model: str | None = None,
    steps: int = 500,
    batch: int = 4,
    crop: int = 256,
    lr: float = 1e-5,
    perceptual_weights: str | None = None,
    perceptual_arch: str = "vgg16",
    perceptual_weight: float = 0.1,
    val_every: int = 50,
    seed: int = 0,
    resume: bool = False,
) -> str:
    """Fine-tune LaMa on grid-shaped masks drawn on quadrat photos (module docstring).

    Args:
        data: prepare_data's training layout (images/, unknown/) or a folder of grid-free images.
        out_dir: where big-lama.pt (best), last.pt, metrics.csv, config.json and train_state.pt go.
        lama_model: the TorchScript LaMa to start from (default: LAMA_MODEL).
        steps: optimizer steps in all (with --resume: up to this step).
        batch: crops per step.
        crop: crop side in px (a multiple of 8).
        lr: Adam learning rate (small: the network is already trained).
        perceptual_weights: a local torchvision state dict for the perceptual loss (off without it).
        perceptual_arch: vgg16 or resnet18 (the architecture of --perceptual-weights).
        perceptual_weight: weight of the perceptual term.
        val_every: validate, save last.pt and keep the best every N steps.
        seed: random seed of crops and masks.
        resume: continue from OUT_DIR/last.pt and train_state.pt.

    Returns:
        JSON summary: validation masked L1 before and after, the saved model.
    """
    from quadratseg.cli import current_settings, device, weights_path

    settings = current_settings()
    if crop % 8:
        raise QuadratsegError(f"--crop must be a multiple of 8 (LaMa's downsampling), got {crop}")
    model = weights_path(lama_model, settings) if lama_model else settings.lama_model
    if model is None and not resume:
        raise QuadratsegError(
            "give --lama-model (or LAMA_MODEL in .env): the TorchScript big-lama.pt to start from"
        )
    import torch

    chosen = str(device())
    if chosen == "auto":
        chosen = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = TrainConfig(
        data,
        out_dir,
        str(model or ""),
        steps,
        batch,
        crop,
        lr,
        perceptual_weights,
        perceptual_arch,
        perceptual_weight,
        val_every,
        seed=seed,
        device=chosen,
    )
    return json.dumps(fine_tune(cfg, resume), indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="grid_inpainting.train")
