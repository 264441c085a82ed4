"""CLI: the pretrained weights catalogue (:mod:`quadratseg.weights`) and which files are present.

python -m quadratseg.list_weights [MODELS_DIR]     (default: QUADRATSEG_MODELS_DIR)
"""

from __future__ import annotations

import sys
from pathlib import Path

from quadratseg import weights
from quadratseg.weights import inventory


def main(argv: list[str] | None = None) -> int:
    """``python -m quadratseg.list_weights [MODELS_DIR]``: the catalogue, present files first."""
    from quadratseg.settings import load_settings

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(f"{weights.__doc__}\n")
        return 0
    models_dir = Path(args[0]) if args else Path(load_settings().models_dir)
    rows = sorted(inventory(models_dir), key=lambda r: not r["present"])
    lines = [f"QUADRATSEG_MODELS_DIR = {models_dir}"]
    for row in rows:
        mark = "present" if row["present"] else "missing"
        lines.append(f"  {mark:8s} {Path(str(row['file'])).name:32s} {row['kind']} -> {row['used_by']}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
