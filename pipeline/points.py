"""CoralNet points against the chain's dense predictions, and our points out as CoralNet CSV.

The CLI is :mod:`pipeline.coralnet`. :func:`score_points` matches each CoralNet ``Name`` to a
processed photo by its key (the path relative to IMAGES), or by its file name when exactly one
photo has it (a file name several photos share is counted apart, never guessed), and maps each
human point (CoralNet's classifier rows are left out) from the raw photo into the quadrat with
the photo's corner homography (``photos/<key>.json`` of ``pipeline.process``). Points outside the
quadrat, on the grid mask (pixels inpainting invented: ``grid_masks/``), or mapped to ``ignore``
(``Off``: frame, tape) are counted, each in its own column, not scored. Only the records of the
latest run are read (``run.json``: its photos and fingerprint; others are named in
``records_left_out``), and a grid mask only when the record says the run made one. Each truth
label is taken to the level of the run's model (a family model is scored against families). At
each point it reads the predicted label from the photo's class map when the run made one
(``class_maps/``: ``--segment mmseg``, weighted or voting ensembles), else from its colonies (a
colony's label, else ``substrate``), and reports accuracy and the confusion per label, and per
photo the cover from the dense prediction against the point estimate with its Wilson interval:
bias, mean absolute error and the share of photos whose dense cover falls inside the point
interval.

:func:`export_points` samples points in each processed quadrat (``random`` or ``grid``), maps them
back to the raw photo and writes the predicted label at each one as a CoralNet annotation CSV, the
photo named by its key.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from quadratseg.cover import label_map, wilson_interval
from quadratseg.errors import QuadratsegError
from quadratseg.formats.coralnet import (
    IGNORE,
    SUBSTRATE,
    check_codes,
    human_points,
    pixel_index,
    read_coralnet_csv,
    read_label_mapping,
    sample_points,
)
from quadratseg.warp import transform_points


def load_records(process_out: str | Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The photo records of the latest ``pipeline.process`` run into ``process_out``, by photo key
    (path relative to IMAGES), and the keys of the records left out: those of photos that run did
    not hold or did not complete, or made with other models or options (``run.json``'s photos and
    fingerprint)."""
    from pipeline.run import RUN_FILE

    folder, run_file = Path(process_out) / "photos", Path(process_out) / RUN_FILE
    if not folder.is_dir() or not run_file.is_file():
        raise QuadratsegError(f"{process_out} holds no finished pipeline.process run: run it into it first")
    run = json.loads(run_file.read_text(encoding="utf-8"))
    current = set(run["photos"])
    records, left_out = {}, []
    for path in sorted(folder.rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["photo"] in current and record.get("fingerprint") == run["fingerprint"]:
            records[record["photo"]] = record
        else:
            left_out.append(record["photo"])
    return records, sorted(left_out)


def match_photo_names(names: Iterable[str], keys: Iterable[str]) -> tuple[dict[str, str], dict[str, int]]:
    """CoralNet ``Name`` values matched to photo keys: the key itself, else the one key with that
    file name. Returns (name -> key, ambiguous name -> how many keys share it); a name that
    matches nothing is in neither.

    Examples:
        >>> match_photo_names(["a/Q1.jpg", "Q1.jpg", "Q2.jpg"], ["a/Q1.jpg", "b/Q1.jpg", "b/Q2.jpg"])
        ({'a/Q1.jpg': 'a/Q1.jpg', 'Q2.jpg': 'b/Q2.jpg'}, {'Q1.jpg': 2})
    """
    by_file: dict[str, list[str]] = defaultdict(list)
    known = set()
    for key in keys:
        known.add(key)
        by_file[PurePosixPath(key).name].append(key)
    matched, ambiguous = {}, {}
    for name in names:
        if name in known:
            matched[name] = name
        elif len(by_file.get(name, [])) == 1:
            matched[name] = by_file[name][0]
        elif len(by_file.get(name, [])) > 1:
            ambiguous[name] = len(by_file[name])
    return matched, ambiguous


def predicted_label_map(process_out: str | Path, record: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """The photo's prediction as a label index map (H, W) of the warped frame (0: none) and the
    label of each index from 1: its class map when the run made one (``class_maps/``, semantic
    and weighted or voting ensembles), else its colonies (``instances/``)."""
    import cv2

    from quadratseg.images import output_name

    classes = record.get("class_map_classes")
    class_map = Path(process_out) / "class_maps" / output_name(record["photo"], ".png")
    if classes and class_map.is_file():
        index = cv2.imread(str(class_map), cv2.IMREAD_UNCHANGED)
        if index is None or index.shape[::-1] != tuple(record["warped_size"]):
            raise QuadratsegError(
                f"{class_map} is not the class map of {record['photo']}: rerun pipeline.process"
            )
        return index.astype(np.int32), list(classes[1:])
    path = Path(process_out) / "instances" / output_name(record["photo"], ".json")
    colonies = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    colonies.sort(key=lambda c: c["score"])  # the surest colony is painted last
    pairs = [(c["label"], [np.asarray(r, dtype=np.float64) for r in c["rings"]]) for c in colonies]
    return label_map(pairs, tuple(record["warped_size"]))


def grid_mask_of(process_out: str | Path, record: dict[str, Any]) -> np.ndarray | None:
    """The photo's grid mask (H, W) bool, warped frame: pixels inpainting invented (None: the
    record says no grid was removed).

    Raises:
        QuadratsegError: the record has a grid mask that is missing or of another size.
    """
    import cv2

    from quadratseg.images import output_name

    if not record.get("grid_mask"):
        return None
    path = Path(process_out) / "grid_masks" / output_name(record["photo"], ".png")
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if mask is None or mask.shape[::-1] != tuple(record["warped_size"]):
        raise QuadratsegError(f"{path} is not the grid mask of {record['photo']}: rerun pipeline.process")
    return mask > 0


def on_mask(points_xy: np.ndarray, mask_hw: np.ndarray | None) -> np.ndarray:
    """(N,) bool: the warped-frame point falls on a True pixel of ``mask_hw`` (False outside it)."""
    out = np.zeros(len(points_xy), dtype=bool)
    if mask_hw is None:
        return out
    h, w = mask_hw.shape
    for k, (x, y) in enumerate(points_xy):
        if np.isfinite(x) and np.isfinite(y) and 0 <= x < w and 0 <= y < h:
            out[k] = bool(mask_hw[int(y), int(x)])
    return out


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


def at_level(label: str, level: str, taxonomy: Any) -> str:
    """A truth label (``substrate`` and ``ignore`` kept) at the model's taxonomy ``level``.

    Raises:
        QuadratsegError: ``level`` is empty (a record of an older run: rerun pipeline.process).
    """
    if label in (SUBSTRATE, IGNORE):
        return label
    if not level:
        raise QuadratsegError("the photo record names no model level: rerun pipeline.process")
    return taxonomy.map_label(label, level)


def score_points(
    process_out: str | Path, coralnet_csv: str | Path, mapping_csv: str | Path
) -> dict[str, Any]:
    """Accuracy, confusion and cover agreement of the chain's predictions at CoralNet points."""
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    points, machine = human_points(read_coralnet_csv(coralnet_csv))
    mapping = read_label_mapping(mapping_csv, taxonomy.classes())
    check_codes(points, mapping, str(coralnet_csv))
    records, left_out = load_records(process_out)
    by_photo: dict[str, list] = defaultdict(list)
    for p in points:
        by_photo[p.name].append(p)
    matched, ambiguous = match_photo_names(by_photo, records)
    confusion: Counter = Counter()
    ignored = outside = outside_image = no_record = on_grid = 0
    photos = []
    for name, photo_points in sorted(by_photo.items()):
        record = records.get(matched.get(name, ""))
        if record is None or record.get("warped_size") is None:
            no_record += 0 if name in ambiguous else len(photo_points)
            continue
        index, names = predicted_label_map(process_out, record)
        raw = np.array([[p.x, p.y] for p in photo_points], dtype=np.float64)
        homography = record.get("homography_raw_to_warped")
        warped = transform_points(raw, np.asarray(homography)) if homography is not None else raw
        predicted = labels_at(warped, index, names)
        invented = on_mask(warped, grid_mask_of(process_out, record))
        truth_counts: Counter = Counter()
        scored = photo_on_grid = 0
        raw_w, raw_h = record.get("raw_size") or (np.inf, np.inf)
        for p, guess, hidden in zip(photo_points, predicted, invented, strict=True):
            truth = at_level(mapping[p.code], record["level"], taxonomy)
            if truth == IGNORE:
                ignored += 1
                continue
            if not (0 <= p.x < raw_w and 0 <= p.y < raw_h):
                outside_image += 1  # a point the photo does not hold (a resized re-export?)
                continue
            if guess is None:
                outside += 1
                continue
            if hidden:  # under the grid: the prediction there is of inpainted pixels
                photo_on_grid += 1
                continue
            confusion[(truth, guess)] += 1
            truth_counts[truth] += 1
            scored += 1
        on_grid += photo_on_grid
        dense = {c["label"]: c["percent"] for c in record.get("cover", [])}
        for label in sorted(set(truth_counts) | {k for k, v in dense.items() if v > 0}):
            if label == SUBSTRATE:
                continue
            low, high = wilson_interval(truth_counts[label], scored)
            photos.append(
                {
                    "photo": record["photo"],
                    "label": label,
                    "points": scored,
                    "on_grid_mask": photo_on_grid,
                    "point_percent": round(100 * truth_counts[label] / max(scored, 1), 3),
                    "point_low": round(100 * low, 3),
                    "point_high": round(100 * high, 3),
                    "dense_percent": dense.get(label, 0.0),
                }
            )
    scored_total = sum(confusion.values())
    if scored_total == 0:
        raise QuadratsegError(
            f"no CoralNet point could be scored ({no_record} on photos not processed, "
            f"{sum(len(by_photo[n]) for n in ambiguous)} on names several photos share, {outside_image} "
            f"outside the image, {outside} outside the quadrat, {on_grid} on the grid mask, {ignored} "
            "ignored): check that the Name column matches the processed photos' keys (their paths "
            "relative to IMAGES) and that Row/Column are pixels of the same image size"
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
        "records_left_out": left_out,
        "on_grid_mask": on_grid,
        "on_ambiguous_names": sum(len(by_photo[n]) for n in ambiguous),
        "ambiguous_names": ambiguous,
        "point_accuracy": round(correct / scored_total, 4),
        "per_label": per_label,
        "cover_bias_pp": round(float(diffs.mean()), 3) if len(diffs) else None,
        "cover_mae_pp": round(float(np.abs(diffs).mean()), 3) if len(diffs) else None,
        "dense_inside_point_interval": round(float(np.mean(inside)), 4) if inside else None,
        "per_photo": photos,
    }


def export_names(keys: Iterable[str], name: str = "file") -> dict[str, str]:
    """The CoralNet ``Name`` of each photo key: its file name (``name="file"``, as CoralNet names
    images) or the key itself (``name="key"``).

    Raises:
        QuadratsegError: ``name`` is neither, or several photos share a file name.

    Examples:
        >>> export_names(["Tiahura/2019/Q1.jpg", "Tiahura/2019/Q2.jpg"])
        {'Tiahura/2019/Q1.jpg': 'Q1.jpg', 'Tiahura/2019/Q2.jpg': 'Q2.jpg'}
    """
    if name not in ("file", "key"):
        raise QuadratsegError(f"--name must be file or key, got {name!r}")
    keys = list(keys)
    if name == "key":
        return {key: key for key in keys}
    names = {key: PurePosixPath(key).name for key in keys}
    shared = Counter(names.values())
    clashes = sorted(f"{n} ({k} photos)" for n, k in shared.items() if k > 1)
    if clashes:
        raise QuadratsegError(
            f"several photos share the file name{'s' if len(clashes) > 1 else ''} {', '.join(clashes[:10])}: "
            "CoralNet would take them for one image. Rename them as uploaded to CoralNet, or pass "
            "--name key (the path relative to IMAGES in the Name column)"
        )
    return names


def export_points(
    process_out: str | Path,
    out_csv: str | Path,
    points: int = 100,
    layout: str = "random",
    seed: int = 0,
    name: str = "file",
) -> dict[str, Any]:
    """Predicted labels at ``points`` points per processed quadrat, in raw-photo pixels, as CoralNet
    CSV (``Name,Row,Column,Label,Key``; ``name``: :func:`export_names`), written atomically."""
    from quadratseg.cover_table import write_table

    rows = []
    photos = 0
    records, left_out = load_records(process_out)
    names = export_names(records, name)
    for key, record in sorted(records.items()):
        if record.get("warped_size") is None:
            continue  # a photo without a quadrat
        index, classes = predicted_label_map(process_out, record)
        warped = sample_points(tuple(record["warped_size"]), points, layout, seed)
        homography = record.get("homography_raw_to_warped")
        raw = transform_points(warped, np.linalg.inv(homography)) if homography is not None else warped
        for (x, y), label in zip(raw, labels_at(warped, index, classes), strict=True):
            rows.append(
                {
                    "Name": names[key],
                    "Row": pixel_index(y),  # the pixel that holds the point, as CoralNet names it
                    "Column": pixel_index(x),
                    "Label": label or SUBSTRATE,
                    "Key": key,
                }
            )
        photos += 1
    if not rows:
        raise QuadratsegError(f"{process_out} holds no processed quadrat to export")
    write_table(out_csv, ["Name", "Row", "Column", "Label", "Key"], rows)
    return {"photos": photos, "points": len(rows), "csv": str(out_csv), "records_left_out": left_out}
