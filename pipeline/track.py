"""CLI: colonies followed across yearly surveys of fixed quadrats.

    python -m pipeline.track SURVEY... --out OUT [--matcher graph|taglab] [--metadata CSV]
    python -m pipeline.track --taglab PROJECT.json --out OUT [--align-outlines]
    quadratseg-track ...                      (the same, as a console command)

``SURVEY``: ``pipeline.process`` output folders (their photo records, ``instances/`` and warped or
grid-free photos). Photos are paired by site and quadrat (``--metadata`` CSV, else the keys' folders,
else the names, as :mod:`quadratseg.photo_meta` reads them) and ordered by date (the day a ``date``
column or the name gives, else the year: :func:`quadratseg.photo_meta.photo_date`). Each consecutive
pair is aligned from the photos (:func:`quadratseg.track.registration.register_photos`), its
colonies matched (:mod:`quadratseg.track.matching`) and followed (:mod:`quadratseg.track.lineage`).

``--taglab``: a TagLab project whose images are surveys of one plot, ordered by acquisition date;
the maps are taken as co-registered, or aligned from the colony outlines with ``--align-outlines``.

Outputs in ``OUT`` (written as a set: a temporary folder replaces ``OUT`` once complete, so a
failed run leaves the previous outputs; ``OUT`` must be new or hold an earlier run's outputs):
``links.csv``, ``colonies.csv``, ``demography.csv``,
``registrations.csv`` (per pair: turn, residual, inliers, or the reason it was refused),
``problems.csv`` (what was refused and why: other pairs go on), ``taglab/<site>_<quadrat>.json``
(our colonies and links as a TagLab project) or, with ``--taglab``, ``taglab_project.json`` (the
input project with only its correspondences replaced by ours), ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

from typing import Any

from pipeline.tracking import track_process_outputs, track_taglab_project
from quadratseg.cli import variadic_words_as_text
from quadratseg.errors import QuadratsegError
from quadratseg.options import as_number


@variadic_words_as_text
def track(
    *surveys: str,
    out: str | None = None,
    taglab: str | None = None,
    matcher: str = "graph",
    metadata: str | None = None,
    quadrat_cm: float = 100.0,
    align_outlines: bool = False,
    report: bool = True,
) -> dict[str, Any]:
    """Follow every colony of fixed quadrats across surveys: links, lineages, demography, report.

    Args:
        surveys: pipeline.process output folders (two or more surveys of the same quadrats).
        out: output folder (links.csv, colonies.csv, demography.csv, registrations.csv, problems.csv,
            summary.json, report.html).
        taglab: a TagLab project JSON instead of SURVEY folders (its images are the surveys).
        matcher: graph (overlap graph with assignment; splits, fusions, changed genus calls) or taglab
            (TagLab's rule: same class, overlap >= 60 % of the smaller colony).
        metadata: CSV with photo,site,year,quadrat (else folders and names give them).
        quadrat_cm: the quadrat's width in cm (areas in cm^2), a positive number.
        align_outlines: with --taglab, align the maps from the colony outlines (else co-registered).
        report: write report.html.

    Returns:
        The summary (also in OUT/summary.json).
    """
    if not out:
        raise QuadratsegError("--out is required: the folder for links.csv, colonies.csv and the report")
    quadrat_cm = as_number("--quadrat-cm", quadrat_cm, above=0)
    surveys = tuple(str(folder) for folder in surveys)
    if taglab:
        if surveys:
            raise QuadratsegError("give either SURVEY folders or --taglab PROJECT.json, not both")
        return track_taglab_project(taglab, out, matcher, align_outlines, report)
    if not surveys:
        raise QuadratsegError("give two or more pipeline.process output folders, or --taglab PROJECT.json")
    return track_process_outputs(surveys, out, matcher, metadata, quadrat_cm, report=report)


def main() -> None:
    """Console entry ``quadratseg-track``."""
    from quadratseg.cli import run

    run(track, name="quadratseg-track")


if __name__ == "__main__":
    main()
