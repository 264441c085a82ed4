"""CoralNet points against the chain's dense predictions, and our points out as CoralNet CSV.

The CLI is :mod:`pipeline.coralnet`. :func:`score_points` maps each human point (CoralNet's
classifier rows are left out) from the raw photo into
the quadrat with the photo's corner homography (``photos/<key>.json`` of ``pipeline.process``);
points outside the quadrat or mapped to ``ignore`` (``Off``: frame, tape) are counted, not
scored. At each point it reads the predicted label (a colony's genus, else ``substrate``) and
reports accuracy and the confusion per label, and per photo the cover from the dense prediction
against the point estimate with its Wilson interval: bias, mean absolute error and the share of
photos whose dense cover falls inside the point interval.

:func:`export_points` samples points in each processed quadrat (``random`` or ``grid``), maps them back to
the raw photo and writes the predicted label at each one as a CoralNet annotation CSV.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.cover import label_map, wilson_interval
from quadratseg.errors import QuadratsegError
from quadratseg.formats.coralnet import (
    IGNORE,
    SUBSTRATE,
    check_codes,
    human_points,
    read_coralnet_csv,
    read_label_mapping,
    sample_points,
    write_coralnet_csv,
)
from quadratseg.warp import transform_points


def load_records(process_out: str | Path) -> dict[str, dict[str, Any]]:
    """The photo records of a ``pipeline.process`` output, by photo file name (and by key)."""
    folder = Path(process_out) / "photos"
    if not folder.is_dir():
        raise QuadratsegError(f"{process_out} holds no photos/ folder: run pipeline.process into it first")
    records = {}
    for path in sorted(folder.rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        records[record["photo"]] = record
        records.setdefault(Path(record["photo"]).name, record)
    return records


def predicted_label_map(process_out: str | Path, record: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """The photo's predicted colonies as a label index map (H, W) of the warped frame (0: none)."""
    from quadratseg.images import output_name

    path = Path(process_out) / "instances" / output_name(record["photo"], ".json")
    colonies = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    colonies.sort(key=lambda c: c["score"])  # the surest colony is painted last
    pairs = [(c["label"], [np.asarray(r, dtype=np.float64) for r in c["rings"]]) for c in colonies]
    return label_map(pairs, tuple(record["warped_size"]))


def labels_at(points_xy: np.ndarray, index: np.ndarray, names: list[str]) -> list[str | None]:
    """Predicted label at each warped-frame point (``substrate`` off colonies, None outside the frame)."""
    h, w = index.shape
    out: list[str | None] = []
    for x, y in points_xy:
        if not (np.isfinite(x) and np.isfinite(y)) or x < 0 or y < 0 or x >= w or y >= h:
            out.append(None)
            continue
        k = int(index[int(y), int(x)])
        out.append(names[k - 1] if k else SUBSTRATE)
    return out


def score_points(
    process_out: str | Path, coralnet_csv: str | Path, mapping_csv: str | Path
) -> dict[str, Any]:
    """Accuracy, confusion and cover agreement of the chain's predictions at CoralNet points."""
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    points, machine = human_points(read_coralnet_csv(coralnet_csv))
    mapping = read_label_mapping(mapping_csv, taxonomy.classes())
    check_codes(points, mapping, str(coralnet_csv))
    records = load_records(process_out)
    by_photo: dict[str, list] = defaultdict(list)
    for p in points:
        by_photo[p.name].append(p)
    confusion: Counter = Counter()
    ignored = outside = outside_image = no_record = 0
    photos = []
    for name, photo_points in sorted(by_photo.items()):
        record = records.get(name)
        if record is None or record.get("warped_size") is None:
            no_record += len(photo_points)
            continue
        index, names = predicted_label_map(process_out, record)
        raw = np.array([[p.x, p.y] for p in photo_points], dtype=np.float64)
        homography = record.get("homography_raw_to_warped")
        warped = transform_points(raw, np.asarray(homography)) if homography is not None else raw
        predicted = labels_at(warped, index, names)
        truth_counts: Counter = Counter()
        scored = 0
        raw_w, raw_h = record.get("raw_size") or (np.inf, np.inf)
        for p, guess in zip(photo_points, predicted, strict=True):
            truth = mapping[p.code]
            if truth == IGNORE:
                ignored += 1
                continue
            if not (0 <= p.x < raw_w and 0 <= p.y < raw_h):
                outside_image += 1  # a point the photo does not hold (a resized re-export?)
                continue
            if guess is None:
                outside += 1
                continue
            confusion[(truth, guess)] += 1
            truth_counts[truth] += 1
            scored += 1
        dense = {c["label"]: c["percent"] for c in record.get("cover", [])}
        for label in sorted(set(truth_counts) | {k for k, v in dense.items() if v > 0}):
            if label == SUBSTRATE:
                continue
            low, high = wilson_interval(truth_counts[label], scored)
            photos.append(
                {
                    "photo": name,
                    "label": label,
                    "points": scored,
                    "point_percent": round(100 * truth_counts[label] / max(scored, 1), 3),
                    "point_low": round(100 * low, 3),
                    "point_high": round(100 * high, 3),
                    "dense_percent": dense.get(label, 0.0),
                }
            )
    scored_total = sum(confusion.values())
    if scored_total == 0:
        raise QuadratsegError(
            f"no CoralNet point could be scored ({no_record} on photos not processed, {outside_image} "
            f"outside the image, {outside} outside the quadrat, {ignored} ignored): check that the Name "
            "column matches the processed photos and that Row/Column are pixels of the same image size"
        )
    correct = sum(v for (t, g), v in confusion.items() if t == g)
    per_label: dict[str, dict[str, Any]] = {}
    for label in sorted({t for t, _ in confusion}):
        total = sum(v for (t, _), v in confusion.items() if t == label)
        per_label[label] = {
            "points": total,
            "accuracy": round(confusion[(label, label)] / total, 4),
            "predicted_as": {g: v for (t, g), v in sorted(confusion.items()) if t == label},
        }
    diffs = np.array([p["dense_percent"] - p["point_percent"] for p in photos]) if photos else np.zeros(0)
    inside = [p["point_low"] <= p["dense_percent"] <= p["point_high"] for p in photos]
    return {
        "points": len(points) + machine,
        "machine_points_left_out": machine,
        "scored": scored_total,
        "ignored": ignored,
        "outside_quadrat": outside,
        "outside_image": outside_image,
        "on_photos_not_processed": no_record,
        "point_accuracy": round(correct / scored_total, 4),
        "per_label": per_label,
        "cover_bias_pp": round(float(diffs.mean()), 3) if len(diffs) else None,
        "cover_mae_pp": round(float(np.abs(diffs).mean()), 3) if len(diffs) else None,
        "dense_inside_point_interval": round(float(np.mean(inside)), 4) if inside else None,
        "per_photo": photos,
    }


def export_points(
    process_out: str | Path, out_csv: str | Path, points: int = 100, layout: str = "random", seed: int = 0
) -> dict[str, Any]:
    """Predicted labels at ``points`` points per processed quadrat, in raw-photo pixels, as CoralNet CSV."""
    rows = []
    photos = 0
    for key, record in sorted(load_records(process_out).items()):
        if key != record["photo"] or record.get("warped_size") is None:
            continue  # the file-name alias of a record, or a photo without a quadrat
        index, names = predicted_label_map(process_out, record)
        warped = sample_points(tuple(record["warped_size"]), points, layout, seed)
        homography = record.get("homography_raw_to_warped")
        raw = transform_points(warped, np.linalg.inv(homography)) if homography is not None else warped
        for (x, y), label in zip(raw, labels_at(warped, index, names), strict=True):
            rows.append((Path(key).name, float(x), float(y), label or SUBSTRATE))
        photos += 1
    if not rows:
        raise QuadratsegError(f"{process_out} holds no processed quadrat to export")
    write_coralnet_csv(rows, out_csv)
    return {"photos": photos, "points": len(rows), "csv": str(out_csv)}
