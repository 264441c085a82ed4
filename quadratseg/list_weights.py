"""CLI: the pretrained weights catalogue (:mod:`quadratseg.weights`) and which files are present.

python -m quadratseg.list_weights [--models-dir DIR]     (default: QUADRATSEG_MODELS_DIR)
"""

from __future__ import annotations

from pathlib import Path

from quadratseg.errors import QuadratsegError
from quadratseg.weights import WeightsChecksumError, inventory


def list_weights(models_dir: str | None = None) -> str:
    """List the pretrained files commands look for in the models folder, present ones first.

    Nothing is downloaded: copy the missing files you need from the sources the catalogue names
    (docs/weights.md).

    Args:
        models_dir: the folder to look at (default: QUADRATSEG_MODELS_DIR).

    Returns:
        One line per file: present or missing, its name, what it is and which stage uses it, and for a
        present file whose official sha256 is known, whether it matches.

    Raises:
        WeightsChecksumError: a present file's sha256 is not the official one (the listing is in the message).
    """
    from quadratseg.cli import current_settings

    root = Path(models_dir) if models_dir else Path(current_settings().models_dir)
    if models_dir and not root.is_dir():
        raise QuadratsegError(f"--models-dir {root} is not a folder")
    rows = sorted(inventory(root), key=lambda r: not r["present"])
    lines = [f"QUADRATSEG_MODELS_DIR = {root}" + ("" if root.is_dir() else " (does not exist yet)")]
    for row in rows:
        mark = "present" if row["present"] else "missing"
        checked = {"ok": " [sha256 ok]", "mismatch": " [sha256 MISMATCH]"}.get(str(row["checksum"]), "")
        name = Path(str(row["file"])).name
        lines.append(f"  {mark:8s} {name:32s} {row['kind']} -> {row['used_by']}{checked}")
    damaged = [Path(str(r["file"])).name for r in rows if r["checksum"] == "mismatch"]
    if damaged:
        raise WeightsChecksumError(
            "\n".join(lines) + f"\n{', '.join(damaged)}: sha256 differs from the official release; the copy "
            "is damaged or another file carries the official name: copy it again (docs/weights.md)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(list_weights, name="quadratseg.list_weights")
