"""CoralNet point annotations: read an export, map its label codes, write our points as CoralNet does.

A CoralNet annotation export is a CSV with one row per point: ``Name`` (the image file name),
``Row`` (y, px), ``Column`` (x, px), ``Label`` (a short code such as ``Porit``), usually with
``Annotator`` and ``Machine suggestion N`` / ``Machine confidence N`` columns and any number of
image metadata columns (kept in ``extra``, never required). Rows whose annotator is CoralNet's
classifier (``robot``) are machine output, not truth: :func:`read_coralnet_csv` marks them and
:func:`human_points` leaves them out.

Positions: CoralNet's ``Row`` and ``Column`` are 0-based pixel indices (the top-left pixel is row 0,
column 0). Ours are continuous, pixel ``k`` spanning ``[k, k + 1)`` (as the chain's label maps are
indexed): a point is read as the centre of the pixel it names (:func:`pixel_centre`) and written as
the pixel that holds it (:func:`pixel_index`).

A label mapping is a CSV ``coralnet,label`` from CoralNet codes to our finegrained labels, or
to ``substrate`` (scored: not coral) or ``ignore`` (not scored: ``Off``, equipment, unclear).

Examples:
    >>> sample_points((100, 100), 4, "grid").tolist()
    [[25.0, 25.0], [75.0, 25.0], [25.0, 75.0], [75.0, 75.0]]
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.text_files import read_utf8_text

REQUIRED = ("Name", "Row", "Column", "Label")
MACHINE_ANNOTATORS = {"robot"}
SUBSTRATE = "substrate"
IGNORE = "ignore"


def pixel_centre(index: float) -> float:
    """The continuous coordinate of CoralNet pixel ``index`` (a Row or Column): its centre.

    Example:
        >>> pixel_centre(10)
        10.5
    """
    return float(index) + 0.5


def pixel_index(coordinate: float) -> int:
    """The CoralNet pixel (Row or Column) that holds a continuous coordinate.

    Example:
        >>> pixel_index(10.7), pixel_index(10.2)
        (10, 10)
    """
    return int(np.floor(coordinate))


@dataclass
class CoralNetPoint:
    """One annotated point: image name, position (x from Column, y from Row: the centre of that
    pixel, :func:`pixel_centre`), label code."""

    name: str
    x: float
    y: float
    code: str
    annotator: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def machine(self) -> bool:
        """True for CoralNet's classifier output (not ground truth)."""
        return self.annotator.strip().lower() in MACHINE_ANNOTATORS


def read_coralnet_csv(path: str | Path) -> list[CoralNetPoint]:
    """All points of a CoralNet export; a clear error naming the file, line and column otherwise."""
    path = Path(path)
    text = read_utf8_text(path, "CoralNet export")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = list(reader.fieldnames or [])
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise QuadratsegError(
            f"{path}: not a CoralNet annotation export: column(s) {', '.join(missing)} missing "
            f"(found {', '.join(h for h in header if h)[:200]}); export 'Annotations' from CoralNet"
        )
    points = []
    for line, row in enumerate(reader, start=2):
        try:
            x, y = pixel_centre(float(row["Column"])), pixel_centre(float(row["Row"]))
        except (TypeError, ValueError):
            raise QuadratsegError(
                f"{path}, line {line}: Row/Column must be pixel numbers, "
                f"got {row['Row']!r}, {row['Column']!r}"
            ) from None
        code = (row["Label"] or "").strip()
        if not code:
            raise QuadratsegError(f"{path}, line {line}: empty Label")
        extra = {k: v for k, v in row.items() if k and k not in REQUIRED and k != "Annotator" and v}
        points.append(CoralNetPoint(row["Name"].strip(), x, y, code, row.get("Annotator") or "", extra))
    return points


def human_points(points: list[CoralNetPoint]) -> tuple[list[CoralNetPoint], int]:
    """The points people labelled, and how many machine points were left out."""
    kept = [p for p in points if not p.machine]
    return kept, len(points) - len(kept)


def read_label_mapping(path: str | Path, known_labels: list[str]) -> dict[str, str]:
    """CoralNet code -> our label (a finegrained label, ``substrate`` or ``ignore``) from a CSV
    ``coralnet,label``; a target that is none of these is refused with close matches."""
    path = Path(path)
    if not path.exists():
        raise QuadratsegError(
            f"label mapping {path} does not exist; write a CSV 'coralnet,label' with one row per CoralNet "
            f"code (label: one of our labels, {SUBSTRATE} or {IGNORE})"
        )
    rows = list(csv.DictReader(io.StringIO(read_utf8_text(path, "label mapping"), newline="")))
    if not rows or not {"coralnet", "label"} <= set(rows[0]):
        raise QuadratsegError(f"{path}: the header must be 'coralnet,label'")
    allowed = [*known_labels, SUBSTRATE, IGNORE]
    mapping = {}
    for line, row in enumerate(rows, start=2):
        code, label = row["coralnet"].strip(), row["label"].strip()
        if label not in allowed:
            close = difflib.get_close_matches(label, allowed, n=3)
            raise QuadratsegError(
                f"{path}, line {line}: {label!r} (for {code!r}) is not one of our labels"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        mapping[code] = label
    return mapping


def check_codes(points: list[CoralNetPoint], mapping: dict[str, str], source: str) -> None:
    """Stop when a point's code has no mapping, naming the codes and their close matches."""
    unknown = sorted({p.code for p in points} - set(mapping))
    if unknown:
        hints = []
        for code in unknown:
            close = difflib.get_close_matches(code, list(mapping), n=2)
            hints.append(f"{code!r}" + (f" (close: {', '.join(close)})" if close else ""))
        raise QuadratsegError(
            f"{source}: CoralNet code(s) without a mapping: {', '.join(hints)}; add them to the label "
            "mapping file (coralnet,label)"
        )


def sample_points(frame_size: tuple[int, int], n: int, mode: str = "random", seed: int = 0) -> np.ndarray:
    """Points (N, 2) x, y px in a ``frame_size=(width, height)`` frame: ``n`` uniform ``random`` ones,
    or a centred ``grid`` of the rows x columns nearest to ``n`` with square-ish cells (N may
    differ from ``n``: 50 on a square frame gives 7 x 7)."""
    w, h = frame_size
    if n < 1:
        raise QuadratsegError(f"the number of points must be at least 1, got {n}")
    if mode == "random":
        return np.random.default_rng(seed).uniform([0, 0], [w, h], (n, 2))
    if mode == "grid":
        cols = max(1, round(np.sqrt(n * w / h)))
        rows = max(1, round(n / cols))
        xs = (np.arange(cols) + 0.5) * w / cols
        ys = (np.arange(rows) + 0.5) * h / rows
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)
    raise QuadratsegError(f"unknown point layout {mode!r}; choose random or grid")


def write_coralnet_csv(rows: list[tuple[str, float, float, str]], path: str | Path) -> Path:
    """Write (name, x, y, label) points as a CoralNet annotation CSV (``Name,Row,Column,Label``),
    each as the pixel that holds it (:func:`pixel_index`), as CoralNet stores them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUIRED)
        for name, x, y, label in rows:
            writer.writerow([name, pixel_index(y), pixel_index(x), label])
    tmp.replace(path)
    return path
