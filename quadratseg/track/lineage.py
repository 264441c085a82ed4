"""One quadrat's surveys tracked in order: links per interval, lineage ids, per-colony rows.

Lineage ids (unique within a quadrat): every colony of the first survey, and every colony born
later, starts a lineage ``L<n>``. A linked colony descends from its largest source (:func:`main_source`):
it keeps that source's lineage when it is the source's only target; when the source has several
targets (the pieces of a split, or pieces that fused with neighbours), each colony descending from it
takes its id with a suffix by decreasing area (``L3.1``, ``L3.2``: the ancestry stays readable). A
fusion names every source lineage in ``parents``.

Frames: interval k compares survey k (its own warped frame, the *source* frame) with survey k + 1
moved into it by ``homographies[k]`` (survey k + 1 px -> survey k px); areas are measured in each
survey's own frame (``Survey.area_cm2``), overlaps in the source frame.

What the two photos both show (:class:`SharedView`): a frame laid a few cm off shows a strip of reef
the other photo does not. Colonies are matched on the part both photos show: each source colony is
cut to it, each target colony moved into the source frame keeps its part inside. A source colony the
target photo shows less than :data:`MIN_SEEN_SHARE` of has no fate (no link, no death: whether it
lived cannot be told alike for every such colony, so it is left out of the mortality), and the
target colonies linked only to it have no event; an unlinked target colony the source photo shows
less than that share of is no recruit (nothing says it was not there before). The events, the
partial mortality and, for a colony cut by the edge of what both photos show, the growth are
measured on that shared part, so the unseen part of a colony is neither loss nor growth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.instances import Instance
from quadratseg.track.matching import Link, leave_out_unseen, match_graph, partial_mortality_px
from quadratseg.track.survey import Survey, clip_instances, frame_footprint, warp_instances

MIN_SEEN_SHARE = 0.5  # the least share of a colony the other photo must show for its fate or birth to count

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
class SharedView:
    """What the two photos of an interval both show, in the source frame.

    Attributes:
        sources: each source colony's part the target photo also shows (None: none of it).
        targets: each target colony moved into the source frame, its part inside (None: none of it).
        source_seen: per source colony, the share of it the target photo shows.
        target_seen: per target colony, the share of it the source photo shows.
        area_px: source px both photos show.
    """

    sources: list[Instance | None]
    targets: list[Instance | None]
    source_seen: list[float]
    target_seen: list[float]
    area_px: int

    def whole(self, source: int, target: int) -> bool:
        """Whether each photo shows all of the source colony and of the target colony."""
        return self.source_seen[source] >= 1.0 and self.target_seen[target] >= 1.0


@dataclass
class Interval:
    """The links of one survey interval (indices into the two surveys' colonies)."""

    source: Survey
    target: Survey
    links: list[Link]
    registration: dict[str, Any] = field(default_factory=dict)
    view: SharedView | None = None

    def shared_area_cm2(self) -> float:
        """The area of reef both photos show, cm^2 (the whole source frame without a view)."""
        width, height = self.source.frame_size
        area_px = self.view.area_px if self.view is not None else width * height
        return area_px * self.source.cm_per_px**2


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


def seen_shares(colonies: Sequence[Instance], seen: Sequence[Instance | None]) -> list[float]:
    """The share of each colony that ``seen`` (its part another photo shows) keeps, 0..1."""
    return [
        (part.area / max(colony.area, 1) if part is not colony else 1.0) if part is not None else 0.0
        for colony, part in zip(colonies, seen, strict=True)
    ]


def shared_view(source: Survey, target: Survey, homography_target_to_source: np.ndarray | None) -> SharedView:
    """What ``source`` and ``target`` both show (:class:`SharedView`), the target moved into the source
    frame by ``homography_target_to_source`` (None: the frames coincide; they must have one size)."""
    if homography_target_to_source is None:
        if tuple(source.frame_size) != tuple(target.frame_size):
            raise QuadratsegError(
                f"surveys {source.name} {tuple(source.frame_size)} and {target.name} "
                f"{tuple(target.frame_size)} differ in size and no alignment was given; align them first"
            )
        homography = np.eye(3)
    else:
        homography = np.asarray(homography_target_to_source, dtype=np.float64)
    moved = warp_instances(target.colonies, homography, target.frame_size, source.frame_size)
    in_source = frame_footprint(homography, target.frame_size, source.frame_size)
    in_target = frame_footprint(np.linalg.inv(homography), source.frame_size, target.frame_size)
    sources = clip_instances(source.colonies, in_source)
    width, height = source.frame_size
    return SharedView(
        sources,
        moved,
        seen_shares(source.colonies, sources),
        seen_shares(target.colonies, clip_instances(target.colonies, in_target)),
        int(np.count_nonzero(in_source)) if in_source is not None else width * height,
    )


def match_interval(
    source: Survey,
    target: Survey,
    homography_target_to_source: np.ndarray | None,
    matcher: Callable[..., list[Link]] = match_graph,
    min_seen_share: float = MIN_SEEN_SHARE,
) -> tuple[list[Link], SharedView]:
    """Links of one interval, matched on what both photos show (:func:`shared_view`; see the module
    docstring), less the rows of the colonies the other photo shows less than ``min_seen_share`` of
    (:func:`quadratseg.track.matching.leave_out_unseen`). Returns the links and the view."""
    view = shared_view(source, target, homography_target_to_source)
    links = matcher(view.sources, view.targets)
    unseen_sources = [i for i, share in enumerate(view.source_seen) if share < min_seen_share]
    unseen_targets = [j for j, share in enumerate(view.target_seen) if share < min_seen_share]
    return leave_out_unseen(links, unseen_sources, unseen_targets), view


def main_source(sources: Sequence[int], areas: Sequence[float]) -> int:
    """The source a colony descends from among its linked ``sources``: the largest by ``areas`` (the
    earlier survey's colony areas; the first of equals).

    Examples:
        >>> main_source([0, 1], [4.0, 25.0])
        1
    """
    return max(sorted(sources), key=lambda i: areas[i])


def assign_lineages(
    areas: Sequence[Sequence[float]], intervals: Sequence[list[Link]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Lineage ids per survey and colony (unique within the surveys), and each colony's ``parents``
    (the lineages it came from by fusion, else empty), from the links of each interval (see the
    module docstring). ``areas``: per survey in date order, its colonies' areas (any unit: a colony
    descends from its largest source, a split's pieces are numbered by decreasing area)."""
    counter = 0

    def new() -> str:
        nonlocal counter
        counter += 1
        return f"L{counter}"

    lineages = [[new() for _ in areas[0]]]
    parents = [["" for _ in areas[0]]]
    for k, links in enumerate(intervals):
        target = areas[k + 1]
        sources_of: dict[int, list[int]] = {}
        targets_of: dict[int, list[int]] = {}
        for link in links:
            if link.source is not None and link.target is not None:
                sources_of.setdefault(link.target, []).append(link.source)
                targets_of.setdefault(link.source, []).append(link.target)
        main = {j: main_source(sources, areas[k]) for j, sources in sources_of.items()}
        heirs: dict[int, list[int]] = {}
        for j in sorted(main):
            heirs.setdefault(main[j], []).append(j)
        ids, parent_ids = [], []
        for j in range(len(target)):
            sources = sources_of.get(j, [])
            if not sources:
                ids.append(new())
                parent_ids.append("")
                continue
            i = main[j]
            if len(targets_of[i]) == 1:
                ids.append(lineages[k][i])
            else:  # one of several colonies from i: a suffix by decreasing area among those i is main of
                order = sorted(heirs[i], key=lambda t: (-target[t], t))
                ids.append(f"{lineages[k][i]}.{order.index(j) + 1}")
            parent_ids.append(";".join(sorted(lineages[k][s] for s in sources)) if len(sources) > 1 else "")
        lineages.append(ids)
        parents.append(parent_ids)
    return lineages, parents


def _radius_cm(area_cm2: float) -> float:
    return math.sqrt(max(area_cm2, 0.0) / math.pi)


def fate_columns(
    went: Sequence[Link], seen: Instance | None, view: SharedView, cm_per_px: float
) -> dict[str, Any]:
    """A colony's ``fate`` and partial mortality from its rows ``went`` towards the next survey:
    the part ``seen`` of its outline both photos show that none of its linked colonies covers any
    more (a dead colony's loss is whole-colony mortality, not partial). Empty without rows."""
    if not went:
        return {}
    marks = {link.split_fuse for link in went} - {"none"}
    out: dict[str, Any] = {"fate": went[0].event + (f"+{'/'.join(sorted(marks))}" if marks else "")}
    targets = [view.targets[link.target] for link in went if link.target is not None]
    if targets and seen is not None:
        lost = partial_mortality_px(seen, targets)
        out["partial_mortality_cm2"] = round(lost * cm_per_px**2, 2)
        out["partial_mortality_share"] = round(lost / max(seen.area, 1), 4)
    return out


def growth_columns(link: Link, before: Survey, after: Survey, view: SharedView) -> dict[str, Any]:
    """Growth (cm^2 per year) and radial extension (cm per year, from discs of the same areas) over
    the plain link ``link`` from survey ``before`` to ``after``: each colony's own area when both
    photos show all of both, else the areas of the parts both show (source frame)."""
    source, target = link.source, link.target
    if source is None or target is None:
        return {}
    years = after.year - before.year
    if view.whole(source, target):
        previous, area = before.area_cm2(source), after.area_cm2(target)
    else:  # cut by the edge of what both photos show: the unseen part is neither loss nor growth
        previous, area = (px * before.cm_per_px**2 for px in (link.area_source_px, link.area_target_px))
    return {
        "growth_cm2_per_year": round((area - previous) / years, 2),
        "radial_extension_cm_per_year": round((_radius_cm(area) - _radius_cm(previous)) / years, 3),
    }


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
        event of its link to the next survey); what the photos do not both show is left out (module
        docstring).
    """
    surveys = list(surveys)
    if len(homographies) != max(len(surveys) - 1, 0):
        raise QuadratsegError(
            f"{len(surveys)} surveys need {len(surveys) - 1} alignments, got {len(homographies)}"
        )
    check_order(surveys)
    intervals: list[Interval] = []
    for k in range(len(surveys) - 1):
        links, view = match_interval(surveys[k], surveys[k + 1], homographies[k], matcher)
        reg = dict(registrations[k]) if registrations else {}
        intervals.append(Interval(surveys[k], surveys[k + 1], links, reg, view))
    lineages, parents = assign_lineages(
        [[c.area for c in s.colonies] for s in surveys], [iv.links for iv in intervals]
    )
    rows: list[dict[str, Any]] = []
    for k, survey in enumerate(surveys):
        arriving = intervals[k - 1] if k > 0 else None
        leaving = intervals[k] if k < len(intervals) else None
        for j, colony in enumerate(survey.colonies):
            came = [link for link in arriving.links if link.target == j] if arriving else []
            went = [link for link in leaving.links if link.source == j] if leaving else []
            row: dict[str, Any] = {
                "site": survey.site,
                "quadrat": survey.quadrat,
                "survey": survey.name,
                "date": survey.date,
                "lineage": lineages[k][j],
                "parents": parents[k][j],
                "colony_id": survey.ids[j],
                "label": colony.label,
                "area_cm2": round(survey.area_cm2(j), 2),
                "event": came[0].event if came else "",  # no row: outside what both photos show
                "split_fuse": came[0].split_fuse if came else "none",
                "growth_cm2_per_year": "",
                "radial_extension_cm_per_year": "",
                "partial_mortality_cm2": "",
                "partial_mortality_share": "",
                "fate": "",
            }
            if leaving is not None and leaving.view is not None:
                row.update(fate_columns(went, leaving.view.sources[j], leaving.view, survey.cm_per_px))
            plain = len(came) == 1 and came[0].split_fuse == "none" and came[0].source is not None
            if plain and arriving is not None and arriving.view is not None:
                row.update(growth_columns(came[0], surveys[k - 1], survey, arriving.view))
            rows.append(row)
    return QuadratTrack(surveys, intervals, rows)
