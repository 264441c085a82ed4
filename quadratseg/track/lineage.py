"""One quadrat's surveys tracked in order: links per interval, lineage ids, per-colony rows.

Lineage ids (unique within a quadrat): every colony of the first survey, and every colony born
later, starts a lineage ``L<n>``. A colony linked to one source that has no other target keeps the
source's lineage; the pieces of a split take the parent's id with a suffix by decreasing area
(``L3.1``, ``L3.2``: the ancestry stays readable); a fusion takes the lineage of its largest source
and names every source lineage in ``parents``.

Frames: interval k compares survey k (its own warped frame, the *source* frame) with survey k + 1
moved into it by ``homographies[k]`` (survey k + 1 px -> survey k px); areas are measured in each
survey's own frame (``Survey.area_cm2``), overlaps in the source frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.instances import Instance
from quadratseg.track.matching import Link, match_graph, partial_mortality_px
from quadratseg.track.survey import Survey, warp_instances

LINK_COLUMNS = [
    "source_survey",
    "source_id",
    "target_survey",
    "target_id",
    "class",
    "event",
    "split_fuse",
    "area_source_cm2",
    "area_target_cm2",
    "iou",
]
COLONY_TRACK_COLUMNS = [
    "site",
    "quadrat",
    "survey",
    "date",
    "lineage",
    "parents",
    "colony_id",
    "label",
    "area_cm2",
    "event",
    "split_fuse",
    "growth_cm2_per_year",
    "radial_extension_cm_per_year",
    "partial_mortality_cm2",
    "partial_mortality_share",
    "fate",
]


@dataclass
class Interval:
    """The links of one survey interval (indices into the two surveys' colonies)."""

    source: Survey
    target: Survey
    links: list[Link]
    registration: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuadratTrack:
    """A quadrat followed over its surveys: the intervals and one row per colony and survey."""

    surveys: list[Survey]
    intervals: list[Interval]
    colonies: list[dict[str, Any]]

    def link_rows(self) -> list[dict[str, Any]]:
        """``links.csv`` rows (:data:`LINK_COLUMNS`): ids are the surveys' colony ids, areas in cm^2
        each in its own survey's frame; an empty id for a dead (no target) or born (no source)."""
        rows = []
        for interval in self.intervals:
            s, t = interval.source, interval.target
            for link in interval.links:
                rows.append(
                    {
                        "source_survey": s.name,
                        "source_id": s.ids[link.source] if link.source is not None else "",
                        "target_survey": t.name,
                        "target_id": t.ids[link.target] if link.target is not None else "",
                        "class": link.label,
                        "event": link.event,
                        "split_fuse": link.split_fuse,
                        "area_source_cm2": round(s.area_cm2(link.source), 2)
                        if link.source is not None
                        else 0.0,
                        "area_target_cm2": round(t.area_cm2(link.target), 2)
                        if link.target is not None
                        else 0.0,
                        "iou": link.iou,
                    }
                )
        return rows


def check_order(surveys: Sequence[Survey]) -> None:
    """Refuse surveys of one quadrat that share a date (their order would be a guess).

    Raises:
        QuadratsegError: naming the surveys and the date.
    """
    seen: dict[float, str] = {}
    for survey in surveys:
        if survey.year in seen:
            raise QuadratsegError(
                f"surveys {seen[survey.year]} and {survey.name} of quadrat {survey.site}/{survey.quadrat} "
                f"have the same date {survey.date}; keep one, or give each its own date (metadata CSV)"
            )
        seen[survey.year] = survey.name


def match_interval(
    source: Survey,
    target: Survey,
    homography_target_to_source: np.ndarray | None,
    matcher: Callable[..., list[Link]] = match_graph,
) -> tuple[list[Link], list[Instance | None]]:
    """Links of one interval: the target's colonies moved into the source frame (identity when
    ``homography_target_to_source`` is None and the frames have one size), then matched. Returns
    the links and the moved target colonies."""
    if homography_target_to_source is None:
        if tuple(source.frame_size) != tuple(target.frame_size):
            raise QuadratsegError(
                f"surveys {source.name} {tuple(source.frame_size)} and {target.name} "
                f"{tuple(target.frame_size)} differ in size and no alignment was given; align them first"
            )
        moved: list[Instance | None] = list(target.colonies)
    else:
        moved = warp_instances(
            target.colonies, homography_target_to_source, target.frame_size, source.frame_size
        )
    return matcher(list(source.colonies), moved), moved


def _unlinked_event(k: int, moved_targets: Sequence[Sequence[Instance | None]], j: int) -> str:
    """The event of colony ``j`` of survey ``k`` that no link brought: ``born`` when it lies in the
    earlier survey's frame once aligned; "" in the first survey, or when the alignment put it outside
    that frame (nothing says it was not there before)."""
    if k == 0 or moved_targets[k - 1][j] is None:
        return ""
    return "born"


def assign_lineages(
    surveys: Sequence[Survey], intervals: Sequence[list[Link]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Lineage ids per survey and colony, and each colony's ``parents`` (the lineages it came from
    by fusion, else empty), from the links of each interval (see the module docstring)."""
    counter = 0

    def new() -> str:
        nonlocal counter
        counter += 1
        return f"L{counter}"

    lineages = [[new() for _ in surveys[0].colonies]]
    parents = [["" for _ in surveys[0].colonies]]
    for k, links in enumerate(intervals):
        target = surveys[k + 1]
        sources_of: dict[int, list[int]] = {}
        targets_of: dict[int, list[int]] = {}
        for link in links:
            if link.source is not None and link.target is not None:
                sources_of.setdefault(link.target, []).append(link.source)
                targets_of.setdefault(link.source, []).append(link.target)
        ids, parent_ids = [], []
        for j in range(len(target.colonies)):
            sources = sources_of.get(j, [])
            if not sources:
                ids.append(new())
                parent_ids.append("")
            elif len(sources) > 1:
                largest = max(sources, key=lambda i: surveys[k].colonies[i].area)
                ids.append(lineages[k][largest])
                parent_ids.append(";".join(sorted(lineages[k][i] for i in sources)))
            else:
                i = sources[0]
                pieces = targets_of[i]
                if len(pieces) == 1:
                    ids.append(lineages[k][i])
                else:
                    order = sorted(pieces, key=lambda t: -target.colonies[t].area)
                    ids.append(f"{lineages[k][i]}.{order.index(j) + 1}")
                parent_ids.append("")
        lineages.append(ids)
        parents.append(parent_ids)
    return lineages, parents


def _radius_cm(area_cm2: float) -> float:
    return math.sqrt(max(area_cm2, 0.0) / math.pi)


def track_quadrat(
    surveys: Sequence[Survey],
    homographies: Sequence[np.ndarray | None],
    matcher: Callable[..., list[Link]] = match_graph,
    registrations: Sequence[dict[str, Any]] | None = None,
) -> QuadratTrack:
    """Follow one quadrat's colonies over its ``surveys`` (ordered by date; same dates refused).

    Args:
        surveys: the quadrat's surveys in date order.
        homographies: per interval k, survey k + 1 px -> survey k px (None: the frames coincide).
        matcher: :func:`quadratseg.track.matching.match_graph` or ``match_taglab``.
        registrations: per interval, what the alignment reported (kept with the interval).

    Returns:
        The intervals' links and the per-colony rows (:data:`COLONY_TRACK_COLUMNS`): area, event that
        brought the colony into this survey, growth and radial extension per year since the previous
        survey (plain links only; a split piece or a fusion has no single former size), partial
        mortality (the share of the previous outline no linked colony covers any more), and fate (the
        event of its link to the next survey).
    """
    surveys = list(surveys)
    if len(homographies) != max(len(surveys) - 1, 0):
        raise QuadratsegError(
            f"{len(surveys)} surveys need {len(surveys) - 1} alignments, got {len(homographies)}"
        )
    check_order(surveys)
    intervals: list[Interval] = []
    moved_targets: list[list[Instance | None]] = []
    for k in range(len(surveys) - 1):
        links, moved = match_interval(surveys[k], surveys[k + 1], homographies[k], matcher)
        reg = dict(registrations[k]) if registrations else {}
        intervals.append(Interval(surveys[k], surveys[k + 1], links, reg))
        moved_targets.append(moved)
    lineages, parents = assign_lineages(surveys, [iv.links for iv in intervals])
    rows: list[dict[str, Any]] = []
    for k, survey in enumerate(surveys):
        arriving = intervals[k - 1].links if k > 0 else []
        leaving = intervals[k].links if k < len(intervals) else []
        for j, colony in enumerate(survey.colonies):
            area = survey.area_cm2(j)
            came = [link for link in arriving if link.target == j]
            went = [link for link in leaving if link.source == j]
            row: dict[str, Any] = {
                "site": survey.site,
                "quadrat": survey.quadrat,
                "survey": survey.name,
                "date": survey.date,
                "lineage": lineages[k][j],
                "parents": parents[k][j],
                "colony_id": survey.ids[j],
                "label": colony.label,
                "area_cm2": round(area, 2),
                "event": came[0].event if came else _unlinked_event(k, moved_targets, j),
                "split_fuse": came[0].split_fuse if came else "none",
                "growth_cm2_per_year": "",
                "radial_extension_cm_per_year": "",
                "partial_mortality_cm2": "",
                "partial_mortality_share": "",
                "fate": "",
            }
            if went:
                marks = {link.split_fuse for link in went} - {"none"}
                row["fate"] = went[0].event + (f"+{'/'.join(sorted(marks))}" if marks else "")
                targets = [moved_targets[k][link.target] for link in went if link.target is not None]
                if targets:  # a dead colony's loss is whole-colony mortality, not partial
                    lost = partial_mortality_px(colony, targets)
                    row["partial_mortality_cm2"] = round(lost * survey.cm_per_px**2, 2)
                    row["partial_mortality_share"] = round(lost / max(colony.area, 1), 4)
            if len(came) == 1 and came[0].split_fuse == "none" and came[0].source is not None:
                before = surveys[k - 1]
                years = survey.year - before.year
                previous = before.area_cm2(came[0].source)
                row["growth_cm2_per_year"] = round((area - previous) / years, 2)
                row["radial_extension_cm_per_year"] = round(
                    (_radius_cm(area) - _radius_cm(previous)) / years, 3
                )
            rows.append(row)
    return QuadratTrack(surveys, intervals, rows)
