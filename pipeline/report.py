"""The HTML report of a ``pipeline.process`` output: what scientists read before the CSVs.

Built from the output folder alone (``cover.csv``, ``colonies.csv``, ``cover_summary.csv``,
``status.csv``, ``overlays/``), so it can be rebuilt at any time: stacked cover per quadrat, cover
per site and year with intervals, colony size distribution, and the photos whose intervals are
widest, with their overlays.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.report import Report

PLOT_LEVEL = "main_family"


def _figure_rgb(fig: Any) -> np.ndarray:
    """A matplotlib figure as an RGB array (H, W, 3)."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def figure_name(prefix: str, photo: str, stem_chars: int = 40) -> str:
    """A file name (no suffix) for a photo's picture in ``img/``: ``prefix``, the key's characters
    (letters and digits kept, others ``_``; the last ``stem_chars``) and the first 8 hex digits of
    the key's SHA-256, so two keys that read alike (``a b.jpg``, ``a_b.jpg``) never share a file.

    Examples:
        >>> figure_name("worst_", "site/a.jpg"), figure_name("worst_", "site_a.jpg")
        ('worst_site_a_jpg_1a61b5ca', 'worst_site_a_jpg_e4d8a807')
    """
    readable = "".join(c if c.isascii() and c.isalnum() else "_" for c in photo)[-stem_chars:]
    digest = hashlib.sha256(photo.encode("utf-8")).hexdigest()[:8]
    return f"{prefix}{readable}_{digest}"


def write_process_report(out_dir: str | Path, worst: int = 3) -> Path:
    """Write ``report.html`` (and ``img/``) into a ``pipeline.process`` output folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from quadratseg.images import output_name, read_image_rgb
    from quadratseg.taxonomy import load_taxonomy

    out = Path(out_dir)
    report = Report(out, title="QUADRATSEG cover report")
    taxonomy = load_taxonomy()
    status = _rows(out / "status.csv")
    cover = [r for r in _rows(out / "cover.csv") if r["level"] == PLOT_LEVEL]
    summary = [r for r in _rows(out / "cover_summary.csv") if r["level"] == PLOT_LEVEL]
    section = report.section("Photos")
    done = sum(1 for r in status if r.get("cover") == "ok")
    section.paragraphs.append(
        f"{len(status)} photos, {done} with a cover; the others say why in status.csv. Cover is the share "
        "of the observed quadrat (the pixels under the grid, invented by inpainting, are left out)."
    )
    section.tables.append(
        (
            "Stages per photo",
            ["photo", "corners", "grid", "removal", "segmentation", "error"],
            [
                [
                    r["photo"],
                    r.get("corners", ""),
                    r.get("grid", ""),
                    r.get("removal", ""),
                    r.get("segmentation", ""),
                    r.get("error", ""),
                ]
                for r in status
            ],
        )
    )
    if cover:
        photos = sorted({r["photo"] for r in cover})
        labels = sorted({r["label"] for r in cover})
        values = {(r["photo"], r["label"]): float(r["percent"]) for r in cover}
        fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(photos)), 4), dpi=100)
        bottom = np.zeros(len(photos))
        for label in labels:
            heights = np.array([values.get((p, label), 0.0) for p in photos])
            ax.bar(range(len(photos)), heights, bottom=bottom, label=label, color=taxonomy.color(label))
            bottom += heights
        ax.set_xticks(range(len(photos)), [Path(p).stem for p in photos], rotation=90, fontsize=6)
        ax.set_ylabel(f"cover % ({PLOT_LEVEL})")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        report.add_image(
            report.section("Cover per quadrat"), "stacked_cover", _figure_rgb(fig), "stacked cover", 1100
        )
        plt.close(fig)
    if summary:
        groups = sorted({(r["site"] or "?", r["year"] or "?") for r in summary})
        labels = sorted({r["label"] for r in summary})
        fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(groups)), 4), dpi=100)
        width = 0.8 / max(len(labels), 1)
        for k, label in enumerate(labels):
            rows = {((r["site"] or "?"), (r["year"] or "?")): r for r in summary if r["label"] == label}
            means = np.array([float(rows[g]["mean"]) if g in rows else 0.0 for g in groups])
            lows = np.array(
                [
                    float(rows[g]["low"]) if g in rows and rows[g]["low"] else m
                    for g, m in zip(groups, means, strict=True)
                ]
            )
            highs = np.array(
                [
                    float(rows[g]["high"]) if g in rows and rows[g]["high"] else m
                    for g, m in zip(groups, means, strict=True)
                ]
            )
            ax.bar(
                np.arange(len(groups)) + k * width,
                means,
                width,
                label=label,
                color=taxonomy.color(label),
                yerr=[means - lows, highs - means],
                capsize=2,
            )
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, [f"{s} {y}" for s, y in groups], fontsize=7)
        ax.set_ylabel("mean cover % (95 % t interval)")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        section = report.section("Cover per site and year")
        section.paragraphs.append(
            "Mean cover over the quadrats of each site and year with a 95 % Student-t interval: it "
            "covers the variation between quadrats only. A systematic error of the model (a class "
            "always over- or under-predicted) moves every quadrat alike and is not in it; the "
            "per-photo intervals of cover.csv carry the model's error."
        )
        if any(not (r["site"] and r["year"]) for r in summary):
            section.paragraphs.append(
                "Photos without a site or a year (no --metadata row, no site/year/ folders, no "
                "parsable name) are pooled in the row marked '?': see the run's warning for their names."
            )
        section.tables.append(
            (
                "cover_summary.csv",
                ["site", "year", "label", "quadrats", "mean", "low", "high"],
                [
                    [r["site"], r["year"], r["label"], r["quadrats"], r["mean"], r["low"], r["high"]]
                    for r in summary
                ],
            )
        )
        report.add_image(section, "site_year", _figure_rgb(fig), "mean cover per site and year", 1100)
        plt.close(fig)
    colonies = _rows(out / "colonies.csv")
    unit = "cm^2" if colonies and colonies[0]["area_cm2"] else "warped px^2"
    areas: dict[str, list[float]] = defaultdict(list)
    for colony in colonies:  # at the plot's level, or the colonies' own when they are coarser
        area = float(colony["area_cm2"] or colony["area_px"])
        if area > 0:
            areas[colony[PLOT_LEVEL] or colony["label"]].append(area)
    if areas:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        every = np.concatenate([np.asarray(v) for v in areas.values()])
        bins = np.logspace(np.log10(max(every.min(), 1.0)), np.log10(max(every.max(), 2.0)), 20)
        below = int(np.sum(every < bins[0]))  # under the first bin: counted in the caption
        for label, values in sorted(areas.items()):
            ax.hist(values, bins=bins, histtype="step", label=label, color=taxonomy.color(label))
        ax.set_xscale("log")
        ax.set_xlabel(f"colony area ({unit}, every part, holes left out)")
        ax.set_ylabel("colonies")
        ax.legend(fontsize=6)
        fig.tight_layout()
        report.add_image(
            report.section("Colony sizes"),
            "colony_sizes",
            _figure_rgb(fig),
            f"colony areas ({below} colon{'y' if below == 1 else 'ies'} under 1 {unit} not shown)"
            if below
            else "colony areas",
            900,
        )
        plt.close(fig)
    finegrained = [r for r in _rows(out / "cover.csv") if r["level"] == "finegrained"]
    widths: dict[str, float] = defaultdict(float)
    for r in finegrained:
        widths[r["photo"]] = max(widths[r["photo"]], float(r["high"]) - float(r["low"]))
    section = report.section("Widest intervals")
    for photo, width in sorted(widths.items(), key=lambda kv: -kv[1])[:worst]:
        overlay = out / "overlays" / output_name(photo, ".jpg")
        if overlay.is_file():
            report.add_image(
                section,
                figure_name("worst_", photo),
                read_image_rgb(overlay),
                f"{photo}: an interval {width:.1f} points wide",
            )
    return report.write()
