"""Links between the colonies of two consecutive surveys, aligned in one frame.

Both surveys' colonies must already be in the same (source) frame: see
:func:`quadratseg.track.survey.warp_instances` and :mod:`quadratseg.track.registration`.

Events use TagLab's vocabulary: a link is ``same``, ``grow`` or ``shrink`` (target area above
``ratio`` x the source's, below source / ``ratio``, else same), marked ``split`` when its source has
several targets and ``fuse`` when its target has several sources (fuse wins where both hold, as in
TagLab); a source without a link is ``dead``, a target without one ``born``.

Two matchers (:data:`MATCHERS`):

- ``taglab`` (the documented baseline, TagLab's ``Correspondences.autoMatch``): a link for every
  pair of the same class whose overlap is at least 60 % of the smaller colony.
- ``graph``: the overlap graph of the pairs whose IoU reaches ``min_iou`` whatever their classes
  (a genus call that changed between years keeps its link), and of the pairs of one class whose
  overlap is at least ``min_overlap`` of the smaller colony (a small piece or recruit inside a larger
  outline is linked only within its class: a recruit of another genus settled where a colony died
  is no descendant of it); each connected group with one source or one target is a
  plain link, a split or a fusion; a group with several of both keeps the one-to-one assignment of
  highest IoU (Hungarian) plus the pairs where one colony lies mostly inside the other (``nested``),
  the split and fusion pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.instances import Instance

AREA_RATIO = 1.05  # TagLab's grow/shrink threshold
TAGLAB_MIN_OVERLAP = 0.6  # TagLab's share of the smaller colony


@dataclass
class Link:
    """One row of ``links.csv``: a link between colony ``source`` (index in the source survey) and
    ``target`` (index in the target survey), or a ``dead`` (``target`` None) or ``born`` (``source``
    None) colony. Areas in px of the common frame."""

    source: int | None
    target: int | None
    label: str
    event: str
    split_fuse: str = "none"
    area_source_px: int = 0
    area_target_px: int = 0
    iou: float = 0.0


@dataclass
class Overlaps:
    """Pixel overlaps of every source x target pair: ``inter`` (n, m) int, ``area_source`` (n,),
    ``area_target`` (m,)."""

    inter: np.ndarray
    area_source: np.ndarray
    area_target: np.ndarray

    def iou(self) -> np.ndarray:
        """IoU (n, m)."""
        union = self.area_source[:, None] + self.area_target[None, :] - self.inter
        return np.where(union > 0, self.inter / np.maximum(union, 1), 0.0)

    def containment(self) -> np.ndarray:
        """Overlap as a share of the smaller colony (n, m), TagLab's measure."""
        smaller = np.minimum(self.area_source[:, None], self.area_target[None, :])
        return np.where(smaller > 0, self.inter / np.maximum(smaller, 1), 0.0)


def overlaps(sources: Sequence[Instance | None], targets: Sequence[Instance | None]) -> Overlaps:
    """Pixel overlaps of two colony lists in one frame, computed inside the pairs' common boxes
    (a colony that is None, e.g. warped out of the frame, has area 0).

    Examples:
        >>> a = Instance("Porites", 1.0, np.ones((4, 4), bool), (0, 0))
        >>> b = Instance("Porites", 1.0, np.ones((4, 4), bool), (2, 2))
        >>> overlaps([a], [b]).inter.tolist()
        [[4]]
    """
    n, m = len(sources), len(targets)
    inter = np.zeros((n, m), dtype=np.int64)
    area_s = np.array([s.area if s is not None else 0 for s in sources], dtype=np.int64)
    area_t = np.array([t.area if t is not None else 0 for t in targets], dtype=np.int64)
    for i, s in enumerate(sources):
        if s is None:
            continue
        sx0, sy0, sx1, sy1 = s.xyxy
        for j, t in enumerate(targets):
            if t is None:
                continue
            tx0, ty0, tx1, ty1 = t.xyxy
            box = (max(sx0, tx0), max(sy0, ty0), min(sx1, tx1), min(sy1, ty1))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            inter[i, j] = int(np.count_nonzero(s.within(box) & t.within(box)))
    return Overlaps(inter, area_s, area_t)


def link_event(area_source: float, area_target: float, ratio: float = AREA_RATIO) -> str:
    """TagLab's event of a link from the two areas: ``grow``, ``shrink`` or ``same``.

    Examples:
        >>> link_event(100, 106), link_event(100, 96), link_event(100, 103)
        ('grow', 'same', 'same')
        >>> link_event(100, 95)
        'shrink'
    """
    if area_target > area_source * ratio:
        return "grow"
    if area_target < area_source / ratio:
        return "shrink"
    return "same"


def links_from_pairs(
    pairs: Sequence[tuple[int, int]],
    sources: Sequence[Instance | None],
    targets: Sequence[Instance | None],
    table: Overlaps,
    ratio: float = AREA_RATIO,
) -> list[Link]:
    """Every row of a survey interval from its linked pairs (source index, target index): the links
    with their events and split/fuse marks, then the dead sources and the born targets.

    The link's ``label`` is the source's class (TagLab's), the born colony's its own.
    """
    pairs = sorted(set(pairs))
    per_source: dict[int, int] = {}
    per_target: dict[int, int] = {}
    for i, j in pairs:
        per_source[i] = per_source.get(i, 0) + 1
        per_target[j] = per_target.get(j, 0) + 1
    iou = table.iou()
    rows = []
    for i, j in pairs:
        mark = "fuse" if per_target[j] > 1 else "split" if per_source[i] > 1 else "none"
        a_s, a_t = int(table.area_source[i]), int(table.area_target[j])
        rows.append(
            Link(
                i,
                j,
                sources[i].label,
                link_event(a_s, a_t, ratio),
                mark,
                a_s,
                a_t,
                round(float(iou[i, j]), 4),
            )
        )
    for i, s in enumerate(sources):
        if s is not None and i not in per_source:
            rows.append(Link(i, None, s.label, "dead", "none", int(table.area_source[i]), 0, 0.0))
    for j, t in enumerate(targets):
        if t is not None and j not in per_target:
            rows.append(Link(None, j, t.label, "born", "none", 0, int(table.area_target[j]), 0.0))
    return rows


def match_taglab(
    sources: Sequence[Instance | None],
    targets: Sequence[Instance | None],
    min_overlap: float = TAGLAB_MIN_OVERLAP,
    ratio: float = AREA_RATIO,
) -> list[Link]:
    """TagLab's rule: a link for every pair of the same class whose overlap is at least
    ``min_overlap`` of the smaller colony (:class:`Link` rows, dead and born included)."""
    table = overlaps(sources, targets)
    share = table.containment()
    pairs = [
        (i, j)
        for i, s in enumerate(sources)
        for j, t in enumerate(targets)
        if s is not None
        and t is not None
        and s.label == t.label
        and table.inter[i, j] > 0
        and share[i, j] >= min_overlap
    ]
    return links_from_pairs(pairs, sources, targets, table, ratio)


def _components(edges: Sequence[tuple[int, int]]) -> list[tuple[set[int], set[int]]]:
    """Connected groups (sources, targets) of a bipartite edge list."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[find(("s", i))] = find(("t", j))
    groups: dict[tuple[str, int], tuple[set[int], set[int]]] = {}
    for node in list(parent):
        sources, targets = groups.setdefault(find(node), (set(), set()))
        (sources if node[0] == "s" else targets).add(node[1])
    return list(groups.values())


def match_graph(
    sources: Sequence[Instance | None],
    targets: Sequence[Instance | None],
    min_overlap: float = 0.5,
    min_iou: float = 0.3,
    nested: float = 0.5,
    ratio: float = AREA_RATIO,
) -> list[Link]:
    """The overlap-graph matcher (see the module docstring): edges where the IoU is at least
    ``min_iou``, or, within one class, the overlap at least ``min_overlap`` of the smaller colony;
    each group with several sources and several targets keeps its Hungarian assignment on IoU plus
    the pairs whose overlap is at least ``nested`` of the smaller colony."""
    from scipy.optimize import linear_sum_assignment

    table = overlaps(sources, targets)
    share, iou = table.containment(), table.iou()
    edges = [
        (int(i), int(j))
        for i, j in zip(*np.nonzero(table.inter), strict=True)
        if iou[i, j] >= min_iou or (share[i, j] >= min_overlap and sources[i].label == targets[j].label)  # type: ignore[union-attr]
    ]
    pairs: list[tuple[int, int]] = []
    for group_s, group_t in _components(edges):
        group = [(i, j) for i, j in edges if i in group_s]
        if len(group_s) == 1 or len(group_t) == 1:
            pairs.extend(group)
            continue
        rows, cols = sorted(group_s), sorted(group_t)
        cost = -iou[np.ix_(rows, cols)]
        assigned = {(rows[r], cols[c]) for r, c in zip(*linear_sum_assignment(cost), strict=True)}
        pairs.extend(p for p in group if p in assigned or share[p] >= nested)
    return links_from_pairs(pairs, sources, targets, table, ratio)


MATCHERS: dict[str, Callable[..., list[Link]]] = {"taglab": match_taglab, "graph": match_graph}


def get_matcher(name: str) -> Callable[..., list[Link]]:
    """The matcher called ``name`` (:data:`MATCHERS`).

    Raises:
        QuadratsegError: an unknown name (the known ones listed).
    """
    if name not in MATCHERS:
        raise QuadratsegError(f"--matcher {name!r} is not a matcher; choose one of {', '.join(MATCHERS)}")
    return MATCHERS[name]


def partial_mortality_px(source: Instance, linked_targets: Sequence[Instance | None]) -> int:
    """Pixels inside the source colony's old outline that none of its linked targets covers any more
    (tissue lost inside the colony, whatever grew elsewhere); the whole colony for a dead one."""
    box = source.xyxy
    old = source.within(box)
    alive = np.zeros_like(old)
    for t in linked_targets:
        if t is not None:
            alive |= t.within(box)
    return int(np.count_nonzero(old & ~alive))


def leave_out_unseen(
    links: Sequence[Link], unseen_sources: Collection[int], unseen_targets: Collection[int]
) -> list[Link]:
    """An interval's rows less those whose colonies the other photo does not show enough of: every
    row of a source in ``unseen_sources`` (its links and its death: its fate cannot be told), and the
    ``born`` row of a target in ``unseen_targets`` (nothing says it was not there before). A target
    whose every link came from an unseen source is left without a row (its earlier self is unseen:
    no recruit either). The rows left keep the matcher's events and split/fuse marks.

    Examples:
        >>> rows = [Link(0, 0, "Porites", "same"), Link(1, None, "Porites", "dead"),
        ...         Link(None, 1, "Porites", "born")]
        >>> [(k.source, k.target) for k in leave_out_unseen(rows, {1}, {1})]
        [(0, 0)]
    """
    sources, targets = set(unseen_sources), set(unseen_targets)
    return [
        link
        for link in links
        if link.source not in sources and not (link.source is None and link.target in targets)
    ]
