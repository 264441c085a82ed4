"""A small, dependency-free HTML report with one section per pipeline stage.

Pictures are written as JPEG files beside the report and referenced relatively, so the
report folder can be zipped and opened anywhere.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.atomic import atomic_write_text


@dataclass
class Section:
    """One stage of the report: a title, paragraphs, tables and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)


@dataclass
class Report:
    """Collects sections and writes ``report.html`` and its pictures under ``out_dir``."""

    out_dir: Path
    title: str = "QUADRATSEG demo"
    sections: list[Section] = field(default_factory=list)
    image_names: set[str] = field(default_factory=set)  # written so far: a repeated name is numbered

    def section(self, title: str) -> Section:
        """Start a new section."""
        section = Section(title)
        self.sections.append(section)
        return section

    def add_image(
        self, section: Section, name: str, image_rgb: np.ndarray, caption: str, max_side: int = 900
    ) -> None:
        """Save an RGB image (H, W, 3) as ``img/<name>.jpg`` (downscaled to ``max_side``) and show it;
        a name given before becomes ``<name>-2`` (``-3``, ...), so each picture keeps its file."""
        unique, number = name, 1
        while unique in self.image_names:
            number += 1
            unique = f"{name}-{number}"
        self.image_names.add(unique)
        name = unique
        folder = self.out_dir / "img"
        folder.mkdir(parents=True, exist_ok=True)
        h, w = image_rgb.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        if scale < 1.0:
            image_rgb = cv2.resize(
                image_rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        path = folder / f"{name}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        section.figures.append((f"img/{name}.jpg", caption))

    def to_html(self, summary: dict[str, Any] | None = None) -> str:
        """The report as one HTML page."""
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{e(self.title)}</title><style>",
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}",
            "figure{display:inline-block;margin:.5em;vertical-align:top}",
            "figure img{max-width:560px;border:1px solid #ccc}",
            "table{border-collapse:collapse;margin:.5em 0}",
            "td,th{border:1px solid #bbb;padding:2px 8px;text-align:right}",
            "th:first-child,td:first-child{text-align:left}pre{background:#f4f4f4;padding:1em;overflow:auto}",
            "</style></head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{e(section.title)}</h2>")
            parts.extend(f"<p>{e(p)}</p>" for p in section.paragraphs)
            for caption, header, rows in section.tables:
                parts.append(f"<table><caption>{e(caption)}</caption><tr>")
                parts.extend(f"<th>{e(str(h))}</th>" for h in header)
                parts.append("</tr>")
                for row in rows:
                    parts.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
                parts.append("</table>")
            for src, caption in section.figures:
                parts.append(
                    f"<figure><img src='{e(src)}' alt='{e(caption)}'>"
                    f"<figcaption>{e(caption)}</figcaption></figure>"
                )
        if summary is not None:
            parts.append("<h2>summary.json</h2><pre>" + e(json.dumps(summary, indent=2)) + "</pre>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, summary: dict[str, Any] | None = None) -> Path:
        """Write ``report.html`` (atomically) and return its path."""
        return atomic_write_text(self.out_dir / "report.html", self.to_html(summary))
