"""Fitting a segmenter's cover-interval terms on a ``pipeline.process`` run over annotated photos
(``python -m pipeline.calibrate``) and reading them back (``pipeline.process --calibration``).

The truth is a table of the true cover per photo and label (:func:`read_truth_csv`); the terms are
fitted at the run's taxonomy level and every coarser one (:func:`fit_run`,
:func:`quadratseg.cover_table.fit_calibration`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from quadratseg.cover import CoverCalibration, CoverEstimate
from quadratseg.errors import QuadratsegError
from quadratseg.text_files import read_utf8_text

logger = logging.getLogger(__name__)


def read_truth_csv(path: str | Path) -> dict[str, dict[str, float]]:
    """``{photo: {label: percent}}`` of a truth table (columns photo, label, percent, any case, a
    spreadsheet's byte-order mark allowed); a pair listed twice adds up (two rows of one genus); a
    row with an empty label lists a photo with no coral; a percent outside 0..100, not a number or
    missing is refused with its line."""
    truth: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    with io.StringIO(read_utf8_text(path, "truth table"), newline="") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [(name or "").strip().lower() for name in reader.fieldnames or []]
        missing = {"photo", "label", "percent"} - set(reader.fieldnames)
        if missing:
            raise QuadratsegError(
                f"{path}: needs the columns photo, label, percent (missing {sorted(missing)})"
            )
        for line, row in enumerate(reader, start=2):
            photo, label = (row.get("photo") or "").strip(), (row.get("label") or "").strip()
            if not photo:
                raise QuadratsegError(f"{path}:{line}: no photo")
            labels = truth[photo]  # listed, even with no label (a photo with no coral)
            if not label:
                continue
            try:
                value = float(row.get("percent") or "")
            except ValueError:
                raise QuadratsegError(
                    f"{path}:{line}: percent {row.get('percent')!r} is not a number"
                ) from None
            if not 0.0 <= value <= 100.0:
                raise QuadratsegError(f"{path}:{line}: percent {value} is outside 0..100")
            labels[label] += value
    return {photo: dict(labels) for photo, labels in truth.items()}


def truth_at_level(labels: Mapping[str, float], taxonomy: Any, level: str) -> dict[str, float]:
    """A photo's true cover per label, at the model's ``level``: labels of a finer level are summed
    into theirs; a label of a coarser level, or of none, is refused with close matches."""
    from quadratseg.taxonomy import LEVELS

    out: dict[str, float] = defaultdict(float)
    known = taxonomy.classes(level)
    for label, value in labels.items():
        if label in known:
            out[label] += value
            continue
        finer = [lv for lv in LEVELS[: LEVELS.index(level)] if label in taxonomy.classes(lv)]
        if not finer:
            taxonomy.map_label(label, level, source=level)  # raises, naming close matches
        out[taxonomy.map_label(label, level, source=finer[-1])] += value
    return dict(out)


def fit_run(
    run_dir: str | Path, truth: Mapping[str, Mapping[str, float]]
) -> tuple[CoverCalibration, dict[str, Any]]:
    """(terms, summary) fitted on a run's photo records against ``truth`` (``{photo: {label:
    percent}}``, photos named by key or unique file name); the module docstring says what is refused."""
    from pipeline.points import load_records, match_photo_names
    from quadratseg.cover import MIN_CLASS_PAIRS
    from quadratseg.cover_table import fit_calibration, level_terms_hold
    from quadratseg.taxonomy import load_taxonomy

    # the records of the run's current photos and fingerprint; photos named as CoralNet names them
    records, _others = load_records(run_dir)
    keys, _ambiguous = match_photo_names(truth, records)

    def key_of(photo: str) -> str | None:
        return keys.get(photo)

    unknown = sorted(p for p in truth if key_of(p) is None)
    if unknown:
        raise QuadratsegError(
            f"{len(unknown)} photo(s) of the truth are not in the run {run_dir} (or their file name is "
            f"not unique there): {unknown[:5]}"
        )
    named: dict[str, list[str]] = defaultdict(list)
    for photo in truth:
        named[str(key_of(photo))].append(photo)
    twice = {key: names for key, names in named.items() if len(names) > 1}
    if twice:
        raise QuadratsegError(f"photos listed under two names in the truth (key and file name): {twice}")
    levels = {r["level"] for r in records.values() if r.get("cover")}
    if len(levels) > 1:
        raise QuadratsegError(f"the run's photos are at several taxonomy levels: {sorted(levels)}")
    taxonomy = load_taxonomy()
    photos, uncovered, unmodelled = [], [], set()
    for photo, labels in truth.items():
        record = records[key_of(photo)]  # type: ignore[index]
        if not record.get("cover"):
            uncovered.append(photo)
            continue
        level = record["level"]
        estimates = [CoverEstimate(**e) for e in record["cover"]]
        true_at = truth_at_level(labels, taxonomy, level)
        unmodelled.update(set(true_at) - {e.label for e in estimates})
        photos.append((estimates, true_at))
    if uncovered:
        logger.warning("left out, no cover in the run (no frame found): %s", uncovered)
    if unmodelled:  # the model cannot report them: only their coarser groups count them
        logger.warning(
            "true labels the model has no class for (in their groups only): %s", sorted(unmodelled)
        )
    if not photos:
        raise QuadratsegError("no annotated photo of the run reached a cover: nothing to fit the terms on")
    (level,) = levels
    methods = {e.method.split("+")[0] for found, _ in photos for e in found}
    if len(methods) > 1:
        raise QuadratsegError(f"the run's estimates are of several kinds: {sorted(methods)}")
    run_file = Path(run_dir) / "run.json"
    run_record = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else {}
    colony_conf = (run_record.get("colony_conf") or {}).get("conf")
    terms = replace(
        fit_calibration(photos, taxonomy, level), level=level, method=methods.pop(), colony_conf=colony_conf
    )
    # levels (and kinds: a group predicted on the photo, or missed) whose own terms rest on too few
    # pairs to hold 95 %: their rows add up their members' terms (wide, but they hold)
    summed = {
        f"{at}/{kind}": f"{count} held-out pairs {what}, fewer than {MIN_CLASS_PAIRS}"
        for at, t in terms.levels.items()
        for kind, what, count in (
            ("predicted", "predicted where the group was", CoverCalibration(**t).present_pairs() or 0),
            ("missed", "missed", t["pairs"].get("missed", 0)),
        )
        if not level_terms_hold(CoverCalibration(**t), kind == "predicted")
    }
    for at, why in summed.items():
        logger.warning("%s rows add up their members' terms: %s (annotate more photos)", at, why)
    summary = {
        "photos": len(photos),
        "left_out_without_cover": uncovered,
        "labels_without_a_class": sorted(unmodelled),
        "level": level,
        "pairs": {level: terms.pairs, **{lv: t["pairs"] for lv, t in terms.levels.items()}},
        "levels_summed": summed,
        "quantile": round(terms.quantile, 3),
        "boundary_px": round(terms.boundary_px, 3),
        "confidence_scale": round(terms.confidence_scale, 3),
        "floor_pp": round(terms.floor_pp, 3),
        "miss_pp": {level: round(terms.miss_pooled_pp, 3)}
        | {lv: round(t["miss_pooled_pp"], 3) for lv, t in terms.levels.items()},
        "absent_pp": {level: round(terms.absent_pooled_pp, 3)}
        | {lv: round(t.get("absent_pooled_pp", 0.0), 3) for lv, t in terms.levels.items()},
    }
    return terms, summary


def read_calibration(path: str | Path) -> CoverCalibration:
    """The interval terms of ``--calibration`` (:meth:`CoverCalibration.from_json`), or an error
    that names the file and the command that writes one."""
    try:
        terms = CoverCalibration.from_json(path)
        for level in terms.levels:
            terms.at_level(level)  # each level's terms are read now, not after the photos
        return terms
    except (OSError, ValueError, TypeError) as exc:
        raise QuadratsegError(
            f"--calibration {path}: not interval terms ({exc}); python -m pipeline.calibrate writes them"
        ) from exc
