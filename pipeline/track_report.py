"""The tracking report (``report.html`` of ``python -m pipeline.track``): per interval the two
surveys side by side with their links drawn, size-frequency by year, growth against initial size per
genus and fate flows per genus."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.report import Report
from quadratseg.track.lineage import QuadratTrack

EVENT_RGB = {
    "same": (60, 120, 255),
    "grow": (40, 200, 60),
    "shrink": (255, 150, 30),
    "dead": (230, 30, 30),
    "born": (250, 230, 40),
}
SPLIT_FUSE_RGB = (220, 60, 220)
MAX_PAIRS = 6  # side-by-side figures in the report


def _figure_rgb(fig: Any) -> np.ndarray:
    fig.canvas.draw()
    return np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])


def _centroid(inst: Any) -> tuple[int, int]:
    ys, xs = np.nonzero(inst.box_mask)
    return int(xs.mean() + inst.origin_xy[0]), int(ys.mean() + inst.origin_xy[1])


def side_by_side(
    source_rgb: np.ndarray, target_rgb: np.ndarray, track: QuadratTrack, interval_index: int
) -> np.ndarray:
    """The two surveys of an interval side by side (HWC uint8 RGB, each in its own warped frame),
    every colony outlined in its event's colour and each link drawn as a line between centroids
    (magenta for split and fusion pieces); dead colonies crossed, recruits ringed."""
    interval = track.intervals[interval_index]
    s, t = interval.source, interval.target
    left, right = source_rgb.copy(), target_rgb.copy()
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h, left.shape[1] + right.shape[1] + 8, 3), 255, np.uint8)
    thickness = max(1, left.shape[1] // 400)
    for link in interval.links:
        colour = EVENT_RGB.get(link.event, (255, 255, 255))
        for inst, image in (
            (s.colonies[link.source] if link.source is not None else None, left),
            (t.colonies[link.target] if link.target is not None else None, right),
        ):
            if inst is None:
                continue
            contours, _ = cv2.findContours(
                inst.box_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(image, contours, -1, colour, thickness, offset=inst.origin_xy)
    canvas[: left.shape[0], : left.shape[1]] = left
    dx = left.shape[1] + 8
    canvas[: right.shape[0], dx : dx + right.shape[1]] = right
    for link in interval.links:
        colour = SPLIT_FUSE_RGB if link.split_fuse != "none" else EVENT_RGB.get(link.event, (255, 255, 255))
        if link.source is not None and link.target is not None:
            a, b = _centroid(s.colonies[link.source]), _centroid(t.colonies[link.target])
            cv2.line(canvas, a, (b[0] + dx, b[1]), colour, thickness, cv2.LINE_AA)
        elif link.source is not None:
            x, y = _centroid(s.colonies[link.source])
            r = 6 * thickness
            cv2.line(canvas, (x - r, y - r), (x + r, y + r), colour, thickness + 1)
            cv2.line(canvas, (x - r, y + r), (x + r, y - r), colour, thickness + 1)
        elif link.target is not None:
            x, y = _centroid(t.colonies[link.target])
            cv2.circle(canvas, (x + dx, y), 8 * thickness, colour, thickness + 1)
    return canvas


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _blank(survey: Any) -> np.ndarray:
    return np.full((survey.frame_size[1], survey.frame_size[0], 3), 235, np.uint8)


def write_track_report(
    out_dir: str | Path, tracks: Sequence[QuadratTrack], images: Mapping[str, Path] | None = None
) -> Path:
    """Write ``report.html`` (and ``img/``) into a tracking output folder from its tables and
    ``tracks``; ``images``: survey name -> its warped photo (a blank map without one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from quadratseg.images import read_image_rgb

    out = Path(out_dir)
    report = Report(out, title="QUADRATSEG colonies across years")
    images = images or {}
    links, colonies = _rows(out / "links.csv"), _rows(out / "colonies.csv")
    problems, demography = _rows(out / "problems.csv"), _rows(out / "demography.csv")
    section = report.section("Links")
    events = Counter(
        r["event"] + (f" ({r['split_fuse']})" if r["split_fuse"] != "none" else "") for r in links
    )
    section.paragraphs.append(
        f"{len(tracks)} quadrat runs, {sum(len(t.intervals) for t in tracks)} survey intervals, "
        f"{len({(r['site'], r['quadrat'], r['lineage']) for r in colonies})} lineages. Colours: same blue, "
        "grow green, shrink orange, dead red (crossed), born yellow (ringed), split and fusion links magenta."
    )
    section.tables.append(("Rows of links.csv by event", ["event", "rows"], sorted(events.items())))
    if problems:
        section.tables.append(
            (
                "Pairs refused (problems.csv)",
                ["source", "target", "problem"],
                [[p["source_survey"], p["target_survey"], p["problem"]] for p in problems],
            )
        )
    shown = 0
    for t_index, track in enumerate(tracks):
        for k, interval in enumerate(track.intervals):
            if shown >= MAX_PAIRS:
                break
            s, t = interval.source, interval.target
            left = read_image_rgb(images[s.name]) if s.name in images else _blank(s)
            right = read_image_rgb(images[t.name]) if t.name in images else _blank(t)
            reg = interval.registration
            caption = f"{s.name} -> {t.name}"
            if reg.get("residual_px") not in (None, ""):
                caption += f" (alignment residual {reg['residual_px']} px, turn {reg.get('turn_deg', 0)} deg)"
            report.add_image(
                section, f"pair_{t_index}_{k}", side_by_side(left, right, track, k), caption, 1400
            )
            shown += 1
    section = report.section("Sizes, growth and fates")
    by_date: dict[str, list[float]] = defaultdict(list)
    for r in colonies:
        if float(r["area_cm2"]) > 0:
            by_date[r["date"]].append(float(r["area_cm2"]))
    if by_date:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bins = np.logspace(-1, 4, 21)
        for date, areas in sorted(by_date.items()):
            ax.hist(areas, bins=bins, histtype="step", linewidth=2, label=date)
        ax.set_xscale("log")
        ax.set(xlabel="colony area (cm^2)", ylabel="colonies", title="Size-frequency by survey date")
        ax.legend()
        fig.tight_layout()
        report.add_image(section, "size_frequency", _figure_rgb(fig), "size-frequency by survey date")
        plt.close(fig)
    growth: dict[str, list[tuple[float, float]]] = defaultdict(list)
    link_index = {(r["target_survey"], r["target_id"]): r for r in links if r["source_id"] and r["target_id"]}
    for r in colonies:
        if r["growth_cm2_per_year"]:
            link = link_index.get((r["survey"], r["colony_id"]))
            if link is not None:
                growth[r["label"]].append((float(link["area_source_cm2"]), float(r["growth_cm2_per_year"])))
    if growth:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for genus, points in sorted(growth.items()):
            xy = np.array(points)
            ax.scatter(xy[:, 0], xy[:, 1], s=12, label=genus)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set(
            xlabel="initial area (cm^2)", ylabel="growth (cm^2 / year)", title="Growth against initial size"
        )
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        report.add_image(
            section, "growth_vs_size", _figure_rgb(fig), "growth against initial size, per genus"
        )
        plt.close(fig)
    fates: dict[str, Counter] = defaultdict(Counter)
    for r in colonies:
        if r["fate"]:
            fates[r["label"]][r["fate"].split("+")[0]] += 1
    for r in colonies:
        if r["event"] == "born":
            fates[r["label"]]["born"] += 1
    if fates:
        genera = sorted(fates)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        bottom = np.zeros(len(genera))
        for event, colour in EVENT_RGB.items():
            values = np.array([fates[g][event] for g in genera], float)
            ax.bar(genera, values, bottom=bottom, color=np.array(colour) / 255, label=event)
            bottom += values
        ax.set(ylabel="colonies", title="Fate flows per genus (fate of each colony, and recruits)")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.legend(fontsize=7)
        fig.tight_layout()
        report.add_image(section, "fate_flows", _figure_rgb(fig), "fates per genus over every interval")
        plt.close(fig)
    if demography:
        columns = [
            "site",
            "interval",
            "genus",
            "quadrats",
            "recruits_per_m2",
            "mortality_rate",
            "growth_median_cm2_per_year",
        ]
        section.tables.append(("demography.csv", columns, [[r[c] for c in columns] for r in demography]))
    return report.write()
