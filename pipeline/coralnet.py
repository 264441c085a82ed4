"""CLI: CoralNet point annotations against the chain's dense predictions, and our points out.

    python -m pipeline.coralnet score PROCESS_OUT CORALNET.csv MAPPING.csv [--report OUT.json]
    python -m pipeline.coralnet export PROCESS_OUT OUT.csv [--points 100 --layout random]

See :mod:`pipeline.points`.
"""

from __future__ import annotations

import json

from pipeline.points import export_points, score_points
from quadratseg.atomic import atomic_write_text


def score(process_out: str, coralnet_csv: str, mapping: str, report: str | None = None) -> str:
    """Score the chain's predictions at CoralNet points (see the module docstring).

    Args:
        process_out: the output folder of pipeline.process.
        coralnet_csv: a CoralNet annotation export (Name, Row, Column, Label, ...); Name is matched
            to a photo's key, or to its file name when only one photo has it.
        mapping: CSV coralnet,label from CoralNet codes to our labels, substrate or ignore.
        report: also write the full result (per label, per photo) as JSON here (atomically).
    """
    result = score_points(process_out, coralnet_csv, mapping)
    if report:
        atomic_write_text(report, json.dumps(result, indent=2))
    return json.dumps({k: v for k, v in result.items() if k != "per_photo"}, indent=2)


def export(
    process_out: str,
    out_csv: str,
    points: int = 100,
    layout: str = "random",
    seed: int = 0,
    name: str = "file",
) -> str:
    """Write the chain's predictions at sampled points as a CoralNet annotation CSV.

    Args:
        process_out: the output folder of pipeline.process.
        out_csv: the CSV to write (Name, Row, Column: raw-photo pixels, Label, and Key: the photo's
            path relative to IMAGES).
        points: points per quadrat.
        layout: random or grid.
        seed: random seed of the points.
        name: what the Name column holds: file (the image's file name, as CoralNet names images;
            file names several photos share are refused) or key (the path relative to IMAGES).
    """
    return json.dumps(export_points(process_out, out_csv, points, layout, seed, name))


def main() -> None:
    """Console entry ``quadratseg-coralnet``."""
    from quadratseg.cli import run

    run({"score": score, "export": export}, name="quadratseg-coralnet")


if __name__ == "__main__":
    main()
