"""Links and events scored against a known truth (synthetic surveys with true lineages).

Predicted colonies are first paired with true colonies of the same survey (Hungarian assignment on
mask IoU, pairs below ``min_iou`` dropped; a predicted colony left unpaired is a false colony).
Then, per interval:

- link precision: predicted links (source and target both present) whose two colonies are paired
  with two true colonies that the truth links; recall: true links found that way; reachable links:
  true links whose two colonies are both paired with predicted ones (the links a matcher could find
  at all: the rest were lost by the segmentation), and the recall over them;
- event accuracy: true rows (links with their event and split/fuse mark, dead and born colonies)
  that the prediction gives the same event and mark (a true colony without a predicted partner
  counts as wrong);
- growth error: over true plain links found (no split or fusion on either side), the absolute
  difference between predicted and true growth in cm^2 per year.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from quadratseg.instances import Instance
from quadratseg.track.matching import Link, overlaps


def pair_with_truth(
    predicted: Sequence[Instance], truth: Sequence[Instance], min_iou: float = 0.5
) -> dict[int, int]:
    """Predicted colony index -> true colony index (one-to-one, IoU >= ``min_iou``), same frame."""
    from scipy.optimize import linear_sum_assignment

    if not predicted or not truth:
        return {}
    iou = overlaps(predicted, truth).iou()
    rows, cols = linear_sum_assignment(-iou)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou}


@dataclass
class LinkScore:
    """Counts over one or more intervals; see the module docstring."""

    predicted_links: int = 0
    true_links: int = 0
    reachable_links: int = 0
    correct_links: int = 0
    true_rows: int = 0
    correct_events: int = 0
    growth_errors_cm2: list[float] = field(default_factory=list)

    def add(self, other: LinkScore) -> None:
        """Add another interval's counts."""
        self.predicted_links += other.predicted_links
        self.true_links += other.true_links
        self.reachable_links += other.reachable_links
        self.correct_links += other.correct_links
        self.true_rows += other.true_rows
        self.correct_events += other.correct_events
        self.growth_errors_cm2.extend(other.growth_errors_cm2)

    def metrics(self) -> dict[str, float | int | None]:
        """link_precision, link_recall, event_accuracy, growth_mae_cm2, link_recall_of_reachable (None
        where nothing to score) and the counts."""
        return {
            "link_precision": round(self.correct_links / self.predicted_links, 4)
            if self.predicted_links
            else None,
            "link_recall": round(self.correct_links / self.true_links, 4) if self.true_links else None,
            "event_accuracy": round(self.correct_events / self.true_rows, 4) if self.true_rows else None,
            "growth_mae_cm2": round(float(np.mean(self.growth_errors_cm2)), 3)
            if self.growth_errors_cm2
            else None,
            "link_recall_of_reachable": round(self.correct_links / self.reachable_links, 4)
            if self.reachable_links
            else None,
            "true_links": self.true_links,
            "reachable_links": self.reachable_links,
            "predicted_links": self.predicted_links,
        }


def score_interval(
    predicted: Sequence[Link],
    truth: Sequence[Link],
    source_pairs: dict[int, int],
    target_pairs: dict[int, int],
    predicted_area_cm2: tuple[Sequence[float], Sequence[float]],
    true_area_cm2: tuple[Sequence[float], Sequence[float]],
    years: float = 1.0,
) -> LinkScore:
    """Score one interval's predicted rows against the true rows.

    Args:
        predicted: the interval's predicted rows (:class:`quadratseg.track.matching.Link`).
        truth: the interval's true rows.
        source_pairs: predicted -> true colony index in the source survey (:func:`pair_with_truth`).
        target_pairs: the same in the target survey.
        predicted_area_cm2: (source areas, target areas) per predicted colony index.
        true_area_cm2: (source areas, target areas) per true colony index.
        years: the interval's length, for growth per year.
    """
    score = LinkScore()
    true_pairs = {(t.source, t.target): t for t in truth if t.source is not None and t.target is not None}
    found: dict[tuple[int, int], Link] = {}
    for link in predicted:
        if link.source is None or link.target is None:
            continue
        score.predicted_links += 1
        key = (source_pairs.get(link.source), target_pairs.get(link.target))
        if key in true_pairs:
            score.correct_links += 1
            found[key] = link  # type: ignore[index]
    score.true_links = len(true_pairs)
    paired_sources, paired_targets = set(source_pairs.values()), set(target_pairs.values())
    score.reachable_links = sum(s in paired_sources and t in paired_targets for s, t in true_pairs)
    dead = {source_pairs.get(p.source) for p in predicted if p.event == "dead" and p.source is not None}
    born = {target_pairs.get(p.target) for p in predicted if p.event == "born" and p.target is not None}
    for row in truth:
        score.true_rows += 1
        if row.event == "dead":
            score.correct_events += row.source in dead
        elif row.event == "born":
            score.correct_events += row.target in born
        else:
            link = found.get((row.source, row.target))  # type: ignore[arg-type]
            if link is not None and (link.event, link.split_fuse) == (row.event, row.split_fuse):
                score.correct_events += 1
            if link is not None and row.split_fuse == "none" and link.split_fuse == "none":
                true_growth = true_area_cm2[1][row.target] - true_area_cm2[0][row.source]  # type: ignore[index]
                growth = predicted_area_cm2[1][link.target] - predicted_area_cm2[0][link.source]  # type: ignore[index]
                score.growth_errors_cm2.append(abs(growth - true_growth) / years)
    return score
