"""The pretrained weights every command may start from, under standard names in ``QUADRATSEG_MODELS_DIR``.

Nothing is ever downloaded: a user copies the files once (from the sources named here) into the
models folder, and each command picks its default from there and says which file it used. A file
that is missing is a :class:`MissingWeightsError` naming the path it looked at and where such a
file comes from. Training from random initialisation is an explicit choice (``--from-scratch``).

The layout (flat, official file names)::

    $QUADRATSEG_MODELS_DIR/
        yolo11{n,s,m,l,x}-seg.pt             coral segmentation training (YOLO)
        yolo11{n,s,m,l,x}-pose.pt            corner and grid training (YOLO pose)
        dinov2_vit{s,b,l,g}14_pretrain.pth   semantic segmentation training (DINOv2 backbone)
        sam_vit_{b,l,h}_*.pth                colony refinement (SAM_CHECKPOINT)
        vit_b_coralscop.pth                  colony refinement (CoralSCoP)
        big-lama.pt                          grid removal (LAMA_MODEL)

``python -m quadratseg.list_weights`` lists the catalogue and which files are present.

Checksums: an entry whose sha256 is known carries it (the SAM files; their names embed the first
six hex digits of the official md5, and the sha256 values are the ones independent projects verify
these releases against). A catalogued file is hashed when it is loaded (:func:`verify_weights_file`)
or listed; a mismatch is a :class:`WeightsChecksumError` (a truncated copy or another file under the
official name). The other releases publish no checksum, so none is checked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError

YOLO_SIZES = ("n", "s", "m", "l", "x")
DINOV2_ARCHS = {"vit_s": "s", "vit_b": "b", "vit_l": "l", "vit_g": "g"}

_ULTRALYTICS = "the ultralytics assets release (github.com/ultralytics/assets/releases, tag v8.3.0)"
_DINOV2 = "the DINOv2 repository's pretrained backbones (dl.fbaipublicfiles.com/dinov2/<name>/<file>)"
_SAM = "the segment-anything repository's model checkpoints (github.com/facebookresearch/segment-anything)"


# what every trainer logs when asked for random initialisation (%s: what starts from random weights)
FROM_SCRATCH_WARNING = (
    "TRAINING FROM RANDOM INITIALISATION (--from-scratch): %s gets no pretrained weights; real data "
    "needs many more epochs than from the pretrained file (see docs/weights.md)"
)


class MissingWeightsError(QuadratsegError):
    """A pretrained weights file the command needs is not in the models folder."""


class WeightsChecksumError(QuadratsegError):
    """A catalogued weights file whose sha256 is not the official one."""


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained file: its catalogue key, file name, what it is, where it comes from, who uses it,
    and its sha256 (hex) when the release's checksum is known."""

    key: str
    filename: str
    kind: str
    source: str
    used_by: str
    sha256: str | None = None


def _catalogue() -> dict[str, WeightsFile]:
    files: list[WeightsFile] = []
    for size in YOLO_SIZES:
        files.append(
            WeightsFile(
                f"yolo11{size}-seg",
                f"yolo11{size}-seg.pt",
                f"YOLO11{size} instance segmentation (COCO)",
                _ULTRALYTICS,
                "coral segmentation training (YOLO)",
            )
        )
        files.append(
            WeightsFile(
                f"yolo11{size}-pose",
                f"yolo11{size}-pose.pt",
                f"YOLO11{size} pose (COCO keypoints)",
                _ULTRALYTICS,
                "corner and grid training (YOLO pose)",
            )
        )
    for arch, letter in DINOV2_ARCHS.items():
        files.append(
            WeightsFile(
                f"dinov2_{arch}",
                f"dinov2_vit{letter}14_pretrain.pth",
                f"DINOv2 ViT-{letter.upper()}/14 backbone (arch={arch})",
                _DINOV2,
                "semantic segmentation training (DINOv2 backbone)",
            )
        )
    for size, file, sha256 in (
        ("b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
        ("l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        ("h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    ):
        files.append(
            WeightsFile(
                f"sam_vit_{size}",
                file,
                f"SAM ViT-{size.upper()}",
                _SAM,
                "colony refinement (SAM_CHECKPOINT)",
                sha256,
            )
        )
    files.append(
        WeightsFile(
            "coralscop",
            "vit_b_coralscop.pth",
            "CoralSCoP (SAM ViT-B fine-tuned on corals)",
            "the CoralSCoP authors' release (the checkpoint link in their repository's README)",
            "colony refinement and its Nuclio function",
        )
    )
    files.append(
        WeightsFile(
            "big-lama",
            "big-lama.pt",
            "LaMa big-lama as TorchScript",
            "simple-lama-inpainting's release (github.com/enesmsahin/simple-lama-inpainting/releases)",
            "grid removal (LAMA_MODEL)",
        )
    )
    return {f.key: f for f in files}


CATALOGUE: dict[str, WeightsFile] = _catalogue()


def weights_file(key: str) -> WeightsFile:
    """The catalogue entry of ``key`` (``yolo11n-seg``, ``dinov2_vit_b``, ``coralscop``...).

    Examples:
        >>> weights_file("dinov2_vit_b").filename
        'dinov2_vitb14_pretrain.pth'
    """
    try:
        return CATALOGUE[key]
    except KeyError:
        raise QuadratsegError(f"no pretrained weights named {key!r}; known: {', '.join(CATALOGUE)}") from None


def locate(key: str, models_dir: str | Path) -> Path:
    """The file of ``key`` in ``models_dir``; a clear error naming the path and the source when absent.

    Raises:
        MissingWeightsError: the file is not there (nothing is downloaded).
    """
    entry = weights_file(key)
    path = Path(models_dir) / entry.filename
    if not path.is_file():
        raise MissingWeightsError(
            f"pretrained weights {path} not found ({entry.kind}). Nothing is downloaded: copy "
            f"{entry.filename} from {entry.source} into QUADRATSEG_MODELS_DIR ({Path(models_dir)}), "
            "give a local file instead, or pass --from-scratch to train from random initialisation"
        )
    return path


def yolo_key(architecture: str | Path) -> str | None:
    """The catalogue key of the COCO weights of a YOLO11 architecture YAML, or None.

    Examples:
        >>> yolo_key("yolo11s-pose.yaml"), yolo_key("configs/yolo11n-seg.yaml"), yolo_key("custom.yaml")
        ('yolo11s-pose', 'yolo11n-seg', None)
    """
    match = re.fullmatch(r"(yolo11[nsmlx]-(?:seg|pose))\.ya?ml", Path(str(architecture)).name)
    return match.group(1) if match else None


def dinov2_key(arch: str) -> str | None:
    """The catalogue key of the official DINOv2 backbone of an ``arch`` (``vit_b``), or None (``tiny``).

    Examples:
        >>> dinov2_key("vit_b"), dinov2_key("tiny")
        ('dinov2_vit_b', None)
    """
    return f"dinov2_{arch}" if arch in DINOV2_ARCHS else None


_BY_FILENAME = {f.filename: f for f in CATALOGUE.values()}
_HASHED: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256, per process


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file, read in 1 MiB blocks; remembered while the file's size and mtime stay."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def checksum_status(path: str | Path) -> str:
    """``ok`` or ``mismatch`` for a catalogued file whose sha256 is known, ``unchecked`` otherwise
    (another name, or a release that publishes no checksum)."""
    entry = _BY_FILENAME.get(Path(path).name)
    if entry is None or entry.sha256 is None:
        return "unchecked"
    return "ok" if file_sha256(path) == entry.sha256 else "mismatch"


def verify_weights_file(path: str | Path) -> str:
    """Check a weights file against its catalogue sha256 (by file name) before it is loaded.

    Returns:
        ``ok`` or ``unchecked`` (see :func:`checksum_status`).

    Raises:
        WeightsChecksumError: the file carries a catalogued name but not the official content.

    Examples:
        >>> verify_weights_file("my_finetuned_model.pth")  # not a catalogued name: nothing to compare
        'unchecked'
    """
    status = checksum_status(path)
    if status == "mismatch":
        entry = _BY_FILENAME[Path(path).name]
        raise WeightsChecksumError(
            f"{path} has sha256 {file_sha256(path)}, not the official {entry.filename}'s {entry.sha256}: the "
            f"copy is damaged or another file carries the official name; copy {entry.filename} again from "
            f"{entry.source}, or give your own file another name"
        )
    return status


def inventory(models_dir: str | Path) -> list[dict[str, str | bool]]:
    """Every catalogue entry with its path in ``models_dir``, whether the file is there and, for a present
    file with a known sha256, whether it matches (``checksum``: ok, mismatch, unchecked or missing)."""
    root = Path(models_dir)
    rows: list[dict[str, str | bool]] = []
    for f in CATALOGUE.values():
        path = root / f.filename
        present = path.is_file()
        rows.append(
            {
                "key": f.key,
                "file": str(path),
                "present": present,
                "checksum": checksum_status(path) if present else "missing",
                "kind": f.kind,
                "used_by": f.used_by,
                "source": f.source,
            }
        )
    return rows


def shipped_weights(weights: str | Path, what: str, default_command: str, run_best: str) -> Path:
    """A weights file the project ships, checked against the sha256 its model card records.

    A checkout without the file, a Git LFS pointer in its place or a truncated copy is refused with
    the way to make the model again (the card's ``made_by`` command, default ``default_command``,
    then ``OUT/<run_best>``, the files its card's ``companion_sha256`` names (a fitted keypoint
    template) and its ``model_card.json`` copied into the shipped folder: a model made again is
    another file, which its own card hashes), never loaded as something else. The companions are
    checked as the weights are.

    Args:
        weights: the shipped ``best.pt``.
        what: what it is, for messages ("the shipped frame model").
        default_command: the command that makes it, when the card names none.
        run_best: where that command leaves the weights under its OUT folder.
    """
    from quadratseg.model_card import model_card_path, read_model_card

    weights = Path(weights)
    card = read_model_card(weights) if model_card_path(weights).is_file() else {}
    companions = dict(card.get("companion_sha256") or {})
    beside = "".join(f", OUT/{Path(run_best).parent.as_posix()}/{name}" for name in companions)
    remake = f"{remake_commands(card.get('made_by') or {}, default_command, run_best)} and copy " + (
        f"OUT/{run_best}{beside} and model_card.json into {weights.parent}"
    )
    if not weights.is_file():
        raise MissingWeightsError(
            f"{what} {weights} is missing: check out the repository again, or run {remake}"
        )
    expected = card.get("weights_sha256")
    if not expected:
        raise MissingWeightsError(
            f"{what} {weights} has no model card recording its sha256 ({model_card_path(weights)}"
            f"{' has none' if card else ' is missing'}): copy the model_card.json made with it beside it, "
            f"or run {remake}"
        )
    actual = file_sha256(weights)
    if actual != expected:
        raise WeightsChecksumError(
            f"{weights} is not {what} (sha256 {actual[:12]}..., its card says {expected[:12]}...; a Git LFS "
            f"pointer or a truncated copy?): check out the repository again, or run {remake}"
        )
    for name, recorded in companions.items():
        companion = weights.parent / name
        if not companion.is_file():
            raise MissingWeightsError(
                f"{what}'s {name} ({companion}) is missing: check out the repository again, or run {remake}"
            )
        if file_sha256(companion) != recorded:
            raise WeightsChecksumError(
                f"{companion} is not the {name} {what} was made with (its card records sha256 "
                f"{recorded[:12]}...): check out the repository again, or run {remake}"
            )
    return weights


def start_model_card(start: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a training run that goes on from ``start`` (``--start``, a model a project command made)
    records of it (``{"file", "sha256", "made_by", "measured"}``), and its whole model card for the
    caller's own checks (task, classes: what the run needs of it).

    Raises:
        QuadratsegError: ``start`` is not a file, has no model card, or its card records another file's
            sha256 (a model replaced or cut short beside an older card).
    """
    from quadratseg.model_card import model_card_path, read_model_card

    path = Path(start)
    if not path.is_file():
        raise QuadratsegError(f"--start {path} is not a file: give the best.pt of an earlier run")
    card = read_model_card(path)
    if not card:
        raise QuadratsegError(
            f"--start {path} has no model card ({model_card_path(path)}): give a model this command made"
        )
    sha256 = file_sha256(path)
    recorded = str(card.get("weights_sha256"))
    if recorded != sha256:
        raise QuadratsegError(
            f"--start {path}: its card describes another file (sha256 {recorded[:12]}..., the file's "
            f"{sha256[:12]}...): a model replaced or cut short beside an older card"
        )
    record = {
        "file": path.name,
        "sha256": sha256,
        "made_by": card.get("made_by"),
        "measured": card.get("measured"),
    }
    return record, card


def remake_commands(made_by: dict[str, Any], default_command: str, run_best: str) -> str:
    """How to make a shipped model again from its card's ``made_by``: its command, after the commands
    that made its ``--start`` (``made_by.start.made_by``, recursively), each next run started from the
    one before's ``OUT/<run_best>``.

    Examples:
        >>> first = {"command": "m OUT --seed 7"}
        >>> remake_commands({"command": "m OUT --start x.pt", "start": {"made_by": first}}, "m OUT", "b.pt")
        'm OUT --seed 7, then m OUT --start x.pt with --start OUT/b.pt of the run before'
    """
    command = made_by.get("command", default_command)
    start = (made_by.get("start") or {}).get("made_by")
    if not start:
        return command
    before = remake_commands(start, default_command, run_best)
    return f"{before}, then {command} with --start OUT/{run_best} of the run before"


def cli_command(prefix: str, flags: dict[str, Any]) -> str:
    """The command line ``prefix --flag value ...`` of the flags that are set (None: left out, the
    command's default), as a model card's ``made_by`` records it.

    Examples:
        >>> cli_command("python -m m OUT", {"images": 500, "epochs": None, "level": "main_family"})
        'python -m m OUT --images 500 --level main_family'
    """
    return " ".join([prefix, *(f"--{k} {v}" for k, v in flags.items() if v is not None)])


def stamp_made_by(weights: str | Path, command: str, seed: int, synth_dir: str | Path, recipe: str) -> dict:
    """Record in the model card of ``weights`` what made them (``made_by``: the command, seed, world and
    generator version and configuration of the synthetic set in ``synth_dir``, read from its manifest,
    and the recipe's file name) and the file's sha256 that :func:`shipped_weights` checks; returns the
    card as written."""
    import json

    from quadratseg.model_card import read_model_card, write_model_card

    manifest = json.loads((Path(synth_dir) / "manifest.json").read_text(encoding="utf-8"))
    card = read_model_card(weights)
    card["made_by"] = {
        "command": command,
        "seed": seed,
        "world": (manifest.get("config") or {}).get("world"),
        "generator": {k: manifest.get(k) for k in ("generator", "version", "config")},
        "config": recipe,
    }
    card["weights_sha256"] = file_sha256(weights)
    write_model_card(weights, card)
    return card
