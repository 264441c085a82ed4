"""Demography per site, survey interval and genus, from the tracked colonies.

From the per-colony rows of :func:`quadratseg.track.lineage.track_quadrat` (``colonies.csv``),
per site, interval (two consecutive survey dates) and genus, over the quadrats surveyed at both:

- ``recruits_per_m2``: colonies born in the interval per m^2 of reef surveyed at both dates (the
  part of the quadrat both photos show, when it is given);
- ``mortality_rate``: share of the colonies alive at the start that died (whole-colony mortality)
  over the interval, among those whose fate the later photo shows (a colony with an empty ``fate``,
  one the later photo shows too little of, is left out of both counts);
- growth distribution: ``growth_median_cm2_per_year`` with the quartiles, over the plain links
  (one colony to one colony, no split or fusion), and ``partial_mortality_share_mean``;
- size-frequency at the start: counts per size class (:data:`SIZE_CLASSES_CM2`) of those colonies.

Each rate has a 95 % interval by bootstrap over quadrats (``BOOTSTRAP`` resamples of the quadrats
with replacement, percentiles 2.5 and 97.5; the ``interval`` column says so); with one quadrat there
is no interval (empty), as the variation between quadrats is unknown. The genus of a colony is its
label at the start of the interval (its label in the target survey for a recruit).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

BOOTSTRAP = 1000
SIZE_CLASSES_CM2 = (0.0, 10.0, 50.0, 100.0, 500.0, float("inf"))


def size_class_names(edges: Sequence[float] = SIZE_CLASSES_CM2) -> list[str]:
    """Column names of the size classes.

    Examples:
        >>> size_class_names((0, 10, float("inf")))
        ['size_0_10_cm2', 'size_10_up_cm2']
    """
    names = []
    for lo, hi in itertools.pairwise(edges):
        names.append(f"size_{lo:g}_{'up' if np.isinf(hi) else f'{hi:g}'}_cm2")
    return names


DEMOGRAPHY_COLUMNS = [
    "site",
    "interval",
    "years",
    "genus",
    "quadrats",
    "area_m2",
    "colonies_start",
    "recruits",
    "recruits_per_m2",
    "recruits_per_m2_low",
    "recruits_per_m2_high",
    "deaths",
    "mortality_rate",
    "mortality_rate_low",
    "mortality_rate_high",
    "growth_n",
    "growth_q25_cm2_per_year",
    "growth_median_cm2_per_year",
    "growth_q75_cm2_per_year",
    "growth_median_low",
    "growth_median_high",
    "partial_mortality_share_mean",
    *size_class_names(),
    "interval_method",
]


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    total = float(den.sum())
    return float(num.sum()) / total if total > 0 else float("nan")


def _bootstrap(
    per_quadrat: Sequence[Mapping[str, Any]], statistic: Any, rng: np.random.Generator
) -> tuple[float, float]:
    """95 % percentile interval of ``statistic(quadrats)`` over bootstrap resamples of the quadrats."""
    n = len(per_quadrat)
    values = []
    for _ in range(BOOTSTRAP):
        picks = [per_quadrat[i] for i in rng.integers(0, n, n)]
        value = statistic(picks)
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _recruit_rate(quadrats: Sequence[Mapping[str, Any]]) -> float:
    return _ratio(np.array([q["recruits"] for q in quadrats]), np.array([q["area_m2"] for q in quadrats]))


def _mortality(quadrats: Sequence[Mapping[str, Any]]) -> float:
    return _ratio(np.array([q["deaths"] for q in quadrats]), np.array([q["start"] for q in quadrats]))


def _growth_median(quadrats: Sequence[Mapping[str, Any]]) -> float:
    values = [g for q in quadrats for g in q["growth"]]
    return float(np.median(values)) if values else float("nan")


def _absent(years: float, area_m2: float, size_classes: int) -> dict[str, Any]:
    """A quadrat's numbers for a genus it had at neither date of an interval."""
    return {
        "years": years,
        "area_m2": area_m2,
        "start": 0,
        "deaths": 0,
        "recruits": 0,
        "growth": [],
        "partial": [],
        "sizes": np.zeros(size_classes, dtype=np.int64),
    }


def _num(value: Any) -> float | None:
    if value in ("", None):
        return None
    return float(value)


def _round(value: float, digits: int = 4) -> Any:
    return round(value, digits) if np.isfinite(value) else ""


def demography_rows(
    colonies: Iterable[Mapping[str, Any]],
    quadrat_area_m2: Mapping[tuple[str, str], float],
    genus_column: str = "label",
    seed: int = 0,
    intervals: Collection[tuple[str, str, str, str]] | None = None,
    shared_area_m2: Mapping[tuple[str, str, str, str], float] | None = None,
) -> list[dict[str, Any]]:
    """``demography.csv`` rows (:data:`DEMOGRAPHY_COLUMNS`) from ``colonies.csv`` rows.

    A site's interval counts every quadrat surveyed at both its dates, with or without the genus
    (a quadrat where a genus is absent adds its area to the recruits' denominator, and zeros to
    the bootstrap).

    Args:
        colonies: per-colony rows of every tracked quadrat (site, quadrat, survey, date, label,
            area_cm2, event, fate, growth_cm2_per_year, partial_mortality_share; ``lineage`` ties a
            colony's growth to its genus at the start when the later call names another).
        quadrat_area_m2: each (site, quadrat)'s surveyed area in m^2.
        genus_column: the column that names the genus (``label``, or a taxonomy level's column).
        seed: the bootstrap's seed.
        intervals: the (site, quadrat, start date, end date) pairs that were tracked; consecutive
            surveys of a quadrat outside it (an alignment refused between them: no fates, no
            events) are left out. None: every consecutive pair.
        shared_area_m2: per (site, quadrat, start date, end date), the m^2 of reef both photos show
            (recruits are counted there); an interval not in it takes ``quadrat_area_m2``.
    """
    from quadratseg.track.survey import date_to_year

    rows = list(colonies)
    dates: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in rows:
        key = (row["site"], row["quadrat"])
        if row["date"] not in dates[key]:
            dates[key].append(row["date"])
    # per site and interval: each quadrat's numbers per genus
    table: dict[tuple[str, str, str], dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    surveyed: dict[tuple[str, str], dict[tuple[str, str], tuple[float, float]]] = defaultdict(dict)
    edges = SIZE_CLASSES_CM2
    for (site, quadrat), quadrat_dates in dates.items():
        ordered = sorted(quadrat_dates, key=date_to_year)
        for start, end in itertools.pairwise(ordered):
            if intervals is not None and (site, quadrat, start, end) not in intervals:
                continue
            interval = f"{start}/{end}"  # ISO 8601: 2019/2020, 2019-03-15/2020-09-20
            area_m2 = float(
                (shared_area_m2 or {}).get((site, quadrat, start, end), quadrat_area_m2[(site, quadrat)])
            )
            surveyed[(site, interval)][(site, quadrat)] = (date_to_year(end) - date_to_year(start), area_m2)
            # the colonies whose fate the later photo shows (an empty fate: one it shows too little of)
            at_start = [
                r
                for r in rows
                if (r["site"], r["quadrat"], r["date"]) == (site, quadrat, start) and r["fate"] != ""
            ]
            at_end = [r for r in rows if (r["site"], r["quadrat"], r["date"]) == (site, quadrat, end)]
            # a colony's genus is its label at the start: a later call of another genus keeps its growth there
            genus_at_start = {
                r["lineage"]: r[genus_column]
                for r in rows
                if (r["site"], r["quadrat"], r["date"]) == (site, quadrat, start) and r.get("lineage")
            }
            genera = {r[genus_column] for r in at_start} | {
                r[genus_column] for r in at_end if r["event"] == "born"
            }
            for genus in genera:
                starting = [r for r in at_start if r[genus_column] == genus]
                numbers = {
                    "years": date_to_year(end) - date_to_year(start),
                    "area_m2": area_m2,
                    "start": len(starting),
                    "deaths": sum(1 for r in starting if str(r["fate"]).startswith("dead")),
                    "recruits": sum(1 for r in at_end if r[genus_column] == genus and r["event"] == "born"),
                    "growth": [
                        g
                        for r in at_end
                        if r["event"] != "born"
                        and (g := _num(r["growth_cm2_per_year"])) is not None
                        and genus_at_start.get(r.get("lineage"), r[genus_column]) == genus
                    ],
                    "partial": [
                        p
                        for r in starting
                        if (p := _num(r["partial_mortality_share"])) is not None
                        and not str(r["fate"]).startswith("dead")
                    ],
                    "sizes": np.histogram([float(r["area_cm2"]) for r in starting], bins=edges)[0],
                }
                table[(site, interval, genus)][(site, quadrat)] = numbers
    for (site, interval, _genus), per_quadrat in table.items():  # the quadrats without the genus
        for key, (years, area) in surveyed[(site, interval)].items():
            per_quadrat.setdefault(key, _absent(years, area, len(edges) - 1))
    out = []
    rng = np.random.default_rng(seed)
    for (site, interval, genus), per_quadrat in sorted(table.items()):
        quadrats = list(per_quadrat.values())
        growth = [g for q in quadrats for g in q["growth"]]
        partial = [p for q in quadrats for p in q["partial"]]
        sizes = np.sum([q["sizes"] for q in quadrats], axis=0)
        row: dict[str, Any] = {
            "site": site,
            "interval": interval,
            "years": round(float(np.mean([q["years"] for q in quadrats])), 3),
            "genus": genus,
            "quadrats": len(quadrats),
            "area_m2": round(sum(q["area_m2"] for q in quadrats), 4),
            "colonies_start": sum(q["start"] for q in quadrats),
            "recruits": sum(q["recruits"] for q in quadrats),
            "recruits_per_m2": _round(_recruit_rate(quadrats)),
            "deaths": sum(q["deaths"] for q in quadrats),
            "mortality_rate": _round(_mortality(quadrats)),
            "growth_n": len(growth),
            "growth_q25_cm2_per_year": _round(float(np.percentile(growth, 25)), 2) if growth else "",
            "growth_median_cm2_per_year": _round(float(np.median(growth)), 2) if growth else "",
            "growth_q75_cm2_per_year": _round(float(np.percentile(growth, 75)), 2) if growth else "",
            "partial_mortality_share_mean": _round(float(np.mean(partial))) if partial else "",
            **dict(zip(size_class_names(edges), (int(v) for v in sizes), strict=True)),
        }
        if len(quadrats) > 1:
            for name, statistic, digits in (
                ("recruits_per_m2", _recruit_rate, 4),
                ("mortality_rate", _mortality, 4),
                ("growth_median", _growth_median, 2),
            ):
                low, high = _bootstrap(quadrats, statistic, rng)
                row[f"{name}_low"], row[f"{name}_high"] = _round(low, digits), _round(high, digits)
            row["interval_method"] = (
                f"bootstrap over {len(quadrats)} quadrats, {BOOTSTRAP} resamples, 95 % percentile"
            )
        else:
            row["interval_method"] = "one quadrat: no interval (the variation between quadrats is unknown)"
        out.append(row)
    return out
