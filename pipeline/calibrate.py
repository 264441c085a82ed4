"""CLI: fit a segmenter's cover-interval terms on annotated photos it did not train on.

    python -m pipeline.calibrate RUN_DIR TRUTH_CSV [--out calibration.json]
    python -m pipeline.process SURVEY OUT ... --calibration calibration.json

``RUN_DIR``: a ``pipeline.process`` output over the annotated photos, run as the survey will be
(the same models and options; with or without ``--calibration``: only what no term changes is read
from its photo records). ``TRUTH_CSV``: the true cover of each label on each annotated photo,
columns ``photo`` (the photo's key in the run, or its file name when that is unique), ``label`` and
``percent`` (percent of the quadrat's interior); labels at the model's taxonomy level or a finer one
(summed up to the model's); a label not listed on a photo is absent from it.

The terms (:mod:`quadratseg.cover`) are fitted at the model's level and at every coarser one
(:func:`pipeline.calibration.fit_run`), written atomically as JSON. Photos of the run
without a cover (no frame found) are left out and named; a photo of the truth that the run lacks,
or a label no level of the taxonomy knows, stops the command before anything is written.
"""

from __future__ import annotations

import json

from pipeline.calibration import fit_run, read_truth_csv


def calibrate(run_dir: str, truth_csv: str, out: str = "calibration.json") -> str:
    """Fit the cover-interval terms of the run's segmenter on annotated photos (module docstring)
    and write them to ``out`` (JSON, for ``pipeline.process --calibration``).

    Args:
        run_dir: a pipeline.process output over annotated photos the models did not train on.
        truth_csv: true cover per photo and label (columns photo, label, percent).
        out: where the terms go.

    Returns:
        JSON summary: photos used, pairs per level and kind, the fitted terms.
    """
    terms, summary = fit_run(run_dir, read_truth_csv(truth_csv))
    terms.to_json(out)
    return json.dumps({**summary, "out": str(out)}, indent=2)


def main() -> None:
    """Console entry ``quadratseg-calibrate``."""
    from quadratseg.cli import run

    run(calibrate, name="quadratseg-calibrate")


if __name__ == "__main__":
    main()
