"""The tables of a cover run: ``cover.csv``, ``colonies.csv`` and ``cover_summary.csv``.

One schema for every writer (``pipeline.process`` and ``DINOv2_mmseg.predict``):

- ``cover.csv``, long format, one row per photo x taxonomy level x label (:data:`COVER_COLUMNS`):
  the photo's key and place (site, year, quadrat), the level and label, every field of
  :class:`quadratseg.cover.CoverEstimate` (percent of the observed quadrat, interval, pixels,
  ``miss_pp``...), the observed share, and with the quadrat's size in cm ``area_cm2`` = percent /
  100 x the quadrat's area (the cover's estimate of the label's area over the whole quadrat) beside
  ``observed_area_cm2`` (the label's pixels that were seen, in cm^2).
- ``colonies.csv``, one row per colony per photo (:data:`COLONY_COLUMNS`): id (its index in the
  photo's colonies), label, its class at every taxonomy level (empty at levels finer than the
  model's, the same levels on every photo), confidence, area and outline length
  (:func:`outline_length_px`) in px and, with the quadrat's size, in cm^2 and cm.
- ``cover_summary.csv`` (:data:`SUMMARY_COLUMNS`): per site, year, level and label the mean cover
  over quadrats with its standard error and 95 % Student-t interval (:func:`summarize_cover`; the
  photos of one quadrat make one value). It covers the variation between quadrats only, not the
  model's error.

Sizes in cm: the warped quadrat is ``quadrat_cm`` wide over its ``warped_size=(width, height)`` px
(square pixels), so one pixel is ``(quadrat_cm / width)^2`` cm^2.

Examples:
    >>> cm_per_px(100.0, (1920, 1920))
    0.052083333333333336
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.atomic import atomic_write_text
from quadratseg.cover import (
    MIN_CLASS_PAIRS,
    CoverCalibration,
    CoverEstimate,
    fit_cover_calibration,
    mean_interval,
    reapplied,
    regroup,
)
from quadratseg.instances import Instance
from quadratseg.taxonomy import LEVELS, Taxonomy

PLACE_COLUMNS = ["photo", "site", "year", "quadrat"]
# the ``fit`` of a coarser level's row whose level has terms, but too few pairs of its kind for them
SUMMED = "summed"
ESTIMATE_COLUMNS = [f.name for f in fields(CoverEstimate) if f.name != "label"]
COVER_COLUMNS = [
    *PLACE_COLUMNS,
    "level",
    "label",
    *ESTIMATE_COLUMNS,
    "observed_share",
    "area_cm2",
    "observed_area_cm2",
]
COLONY_COLUMNS = [
    *PLACE_COLUMNS,
    "colony",
    "label",
    *LEVELS,
    "confidence",
    "area_px",
    "area_cm2",
    "perimeter_px",
    "perimeter_cm",
]
SUMMARY_COLUMNS = ["site", "year", "level", "label", "quadrats", "photos", "mean", "se", "low", "high"]


def cm_per_px(quadrat_cm: float | None, warped_size: Sequence[int] | None) -> float | None:
    """The side of a warped pixel in cm, for a quadrat ``quadrat_cm`` wide warped to
    ``warped_size=(width, height)`` px; None when either is unknown."""
    if not quadrat_cm or not warped_size:
        return None
    return float(quadrat_cm) / int(warped_size[0])


def outline_length_px(mask_hw: np.ndarray) -> float:
    """The length in px of a region's outline (outer boundary and holes), (H, W) bool mask: its
    contours (through the boundary pixels' centres) smoothed by the Teh-Chin chain approximation
    and measured as polygons, within about 1 % of a disk's or a turned square's true length
    (counting boundary pixels is 10-30 % short on curves and diagonals).

    Examples:
        >>> square = np.zeros((20, 20), bool)
        >>> square[5:15, 5:15] = True
        >>> outline_length_px(square)  # through the centres of the boundary pixels
        36.0
    """
    import cv2

    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask_hw, dtype=np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_TC89_KCOS
    )
    return float(sum(cv2.arcLength(c, True) for c in contours))


def colony_stats(instances: Iterable[Instance]) -> list[dict[str, Any]]:
    """Per colony what :func:`colony_rows` reads: ``label``, ``score``, ``area_px`` and
    ``perimeter_px`` (:func:`outline_length_px`, rounded to 0.1 px), in the colonies' order."""
    return [
        {
            "label": inst.label,
            "score": round(float(inst.score), 4),
            "area_px": int(inst.area),
            "perimeter_px": round(outline_length_px(inst.box_mask), 1),
        }
        for inst in instances
    ]


def level_estimates(
    estimates: Sequence[CoverEstimate],
    taxonomy: Taxonomy,
    source: str,
    level: str,
    calibration: CoverCalibration | None = None,
) -> list[CoverEstimate]:
    """One photo's estimates (every class at the model's level ``source``) at ``level``: the same at
    ``source``; at a coarser level the labels that map together regrouped (pixels, units, outlines
    and the confidence term add up), with the terms ``calibration`` fitted at that level when it
    has them (:func:`fit_calibration`) on enough pairs of the estimate's kind (at least
    :data:`quadratseg.cover.MIN_CLASS_PAIRS` predicted, or missed, pairs: with fewer a
    split-conformal bound cannot hold 95 %), else with the members' half-widths and miss terms
    added (:func:`quadratseg.cover.regroup`: it holds, but the miss terms of every member not seen
    add up, which widens a group of many genera to most of the quadrat)."""
    if level == source:
        return list(estimates)
    grouped = regroup(estimates, lambda label: taxonomy.map_label(label, level, source=source))
    terms = calibration.at_level(level) if calibration is not None else None
    if terms is None:
        return grouped
    return [
        reapplied(e, terms) if level_terms_hold(terms, e.pixels > 0) else replace(e, fit=SUMMED)
        for e in grouped
    ]


def level_terms_hold(terms: CoverCalibration, predicted: bool) -> bool:
    """Whether terms fitted at a coarser level rest on enough held-out pairs of a kind to hold 95 %
    (:data:`quadratseg.cover.MIN_CLASS_PAIRS`): for a group predicted on the photo, the pairs
    predicted where the group was there (its spread and ``q`` rest on them); for one not predicted,
    the missed pairs."""
    if predicted:
        return (terms.present_pairs() or 0) >= MIN_CLASS_PAIRS
    return terms.pairs.get("missed", 0) >= MIN_CLASS_PAIRS


def fit_calibration(
    photos: Sequence[tuple[Sequence[CoverEstimate], Mapping[str, float]]],
    taxonomy: Taxonomy,
    level: str,
    target: float = 0.95,
) -> CoverCalibration:
    """The interval terms of a segmenter at its level ``level`` and at each coarser one
    (``levels``), each fitted (:func:`quadratseg.cover.fit_cover_calibration`) on the same held-out
    photos' pairs at that level.

    Args:
        photos: per held-out photo, its estimates of every class at ``level`` (from a run with or
            without terms: only the fields no term changes are read) and its true cover (percent of
            the quadrat) per label at ``level``; a label left out is absent (0).
        taxonomy: maps the labels to the coarser levels.
        level: the model's level.
        target: the intervals' coverage.
    """
    coarser = LEVELS[LEVELS.index(level) + 1 :]

    def pairs_at(at: str) -> tuple[list[CoverEstimate], list[float]]:
        estimates, truths = [], []
        for found, truth in photos:
            true_at: dict[str, float] = defaultdict(float)
            for label, value in truth.items():
                true_at[label if at == level else taxonomy.map_label(label, at, source=level)] += float(value)
            grouped = level_estimates(found, taxonomy, level, at)
            estimates.extend(grouped)
            truths.extend(true_at.get(e.label, 0.0) for e in grouped)
        return estimates, truths

    terms = fit_cover_calibration(*pairs_at(level), target=target)
    levels = {at: asdict(fit_cover_calibration(*pairs_at(at), target=target)) for at in coarser}
    return CoverCalibration(**{**asdict(terms), "levels": levels})


def cover_rows(
    photo: str,
    place: Mapping[str, str],
    estimates: Sequence[CoverEstimate],
    observed_share: float,
    taxonomy: Taxonomy,
    level: str,
    quadrat_cm: float | None = None,
    warped_size: Sequence[int] | None = None,
    calibration: CoverCalibration | None = None,
) -> list[dict[str, Any]]:
    """The ``cover.csv`` rows of one photo at the estimates' level and every coarser one (regrouped
    from the same estimates, with the terms ``calibration`` fitted at that level when it has them:
    :func:`level_estimates`).

    Args:
        photo: the photo's key (its path relative to the survey folder).
        place: its site, year and quadrat (:func:`quadratseg.photo_meta.photo_place`).
        estimates: the cover per label at the model's level.
        observed_share: share of the quadrat's pixels that were seen (0..1).
        taxonomy: maps labels to coarser levels.
        level: the model's level (its card's, else the finest that holds its classes:
            ``Taxonomy.model_level``; the model's, not one photo's).
        quadrat_cm: the quadrat's inner width in cm (None: no areas in cm^2).
        warped_size: (width, height) px of the warped quadrat.
    """
    scale = cm_per_px(quadrat_cm, warped_size)
    quadrat_cm2 = scale**2 * int(warped_size[0]) * int(warped_size[1]) if scale and warped_size else None
    source = level
    rows = []
    for level in LEVELS[LEVELS.index(source) :]:
        at_level = level_estimates(estimates, taxonomy, source, level, calibration)
        for e in at_level:
            values = asdict(e)
            rows.append(
                {
                    "photo": photo,
                    **{k: place.get(k, "") for k in PLACE_COLUMNS[1:]},
                    "level": level,
                    **values,
                    "observed_share": round(observed_share, 4),
                    "area_cm2": round(e.percent / 100 * quadrat_cm2, 2) if quadrat_cm2 else "",
                    "observed_area_cm2": round(e.pixels * scale**2, 2) if scale else "",
                }
            )
    return rows


def colony_rows(
    photo: str,
    place: Mapping[str, str],
    colonies: Sequence[Mapping[str, Any]],
    taxonomy: Taxonomy,
    level: str,
    quadrat_cm: float | None = None,
    warped_size: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """The ``colonies.csv`` rows of one photo (``place``, ``taxonomy``, ``level``, ``quadrat_cm``
    and ``warped_size`` as in :func:`cover_rows`).

    Args:
        photo: the photo's key.
        colonies: per colony ``label``, ``score`` (0..1), ``area_px`` and ``perimeter_px`` (warped
            frame; :func:`colony_stats`), in the photo's colony order (the row's ``colony`` id is
            the index).
    """
    if not colonies:
        return []
    scale = cm_per_px(quadrat_cm, warped_size)
    source = level
    coarser = LEVELS[LEVELS.index(source) :]
    rows = []
    for k, colony in enumerate(colonies):
        label = colony["label"]
        classes = {level: taxonomy.map_label(label, level, source=source) for level in coarser}
        rows.append(
            {
                "photo": photo,
                **{key: place.get(key, "") for key in PLACE_COLUMNS[1:]},
                "colony": k,
                "label": label,
                **{level: classes.get(level, "") for level in LEVELS},
                "confidence": round(float(colony["score"]), 4),
                "area_px": int(colony["area_px"]),
                "area_cm2": round(int(colony["area_px"]) * scale**2, 2) if scale else "",
                "perimeter_px": round(float(colony["perimeter_px"]), 1),
                "perimeter_cm": round(float(colony["perimeter_px"]) * scale, 2) if scale else "",
            }
        )
    return rows


def summarize_cover(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``cover_summary.csv``: per site, year, level and label, the mean cover over quadrats with its
    standard error and 95 % Student-t interval (variation between quadrats only).

    The photos of one quadrat (same site, year and quadrat id: a retake) make one value, the mean of
    their covers, so a quadrat photographed twice does not count twice; a photo without a site, a
    year or a quadrat id counts as a quadrat of its own. ``quadrats`` counts the quadrats,
    ``photos`` the photos.
    """
    # (site, year, level, label) -> quadrat (or photo) -> its photos' covers
    groups: dict[tuple[str, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        quadrat = str(row.get("quadrat") or "")
        known = quadrat and row["site"] and row["year"]  # unplaced photos pool sites: no merging
        groups[(row["site"], row["year"], row["level"], row["label"])][
            f"quadrat {quadrat}" if known else f"photo {row['photo']}"
        ].append(float(row["percent"]))
    out = []
    for (site, year, level, label), by_quadrat in sorted(groups.items()):
        mean, se, low, high = mean_interval([float(np.mean(v)) for v in by_quadrat.values()])
        out.append(
            {
                "site": site,
                "year": year,
                "level": level,
                "label": label,
                "quadrats": len(by_quadrat),
                "photos": sum(len(v) for v in by_quadrat.values()),
                "mean": round(mean, 4),
                "se": round(se, 4) if np.isfinite(se) else "",
                "low": round(max(low, 0.0), 4) if np.isfinite(low) else "",
                "high": round(min(high, 100.0), 4) if np.isfinite(high) else "",
            }
        )
    return out


def table_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of ``rows`` under ``columns`` (keys outside them are left out)."""
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return handle.getvalue()


def write_table(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a table as CSV atomically (a unique temporary name, then one rename)."""
    return atomic_write_text(path, table_text(columns, rows))
