"""CLI: a corner model on real photo-quadrats with hand-annotated corners (frame found, corner error).

    python -m grid_pose_detection.evaluate_real best.pt [--photos DIR] [--out real_frames.json] [--no-refine]
        [--ablate 0-2.8:dark,5.5-15:silver,0-2.8:dark+5.5-15:silver]

``DIR`` holds the photos and a ``corners.json`` of hand corners (the inner corners TL, TR, BR, BL of each
photo, pixel-corner coordinates of the file as stored, before any EXIF orientation; the layout of
``shared/data/real_quadrats/coralscop/corners.json``: ``{"photos": {name: {"corners": [[x, y] * 4],
"width": W, "height": H}}}``, ``width`` and ``height`` (the stored file's, optional) checked against the
file). The photos are read upright and the hand corners turned with them. Default ``DIR``:
``real_quadrats/coralscop`` of the shared data folder (``QUADRATSEG_SHARED_DATA``, else
``../shared/data`` beside the checkout).

Per photo: whether a frame was found (a warp was made) and, if not, the predictor's reason; the mean
distance of the reported corners (refined when refinement is on) from the hand corners in px and as a
share of the quadrat side (the mean edge of the hand quadrilateral); whether that share is within
``WITHIN_SHARE`` (1.5 %). A photo without a frame never counts as within, whatever its corners. A photo
that cannot be read or matched is a row with its reason; it does not stop the others.

The summary (``summary``, and :func:`real_frames` for the demo's ``summary.json``) gives ``photos``,
``found``, ``within_1_5pct`` (photos found and within 1.5 %), ``mean_error_pct`` (over the photos
found; None when none was) and ``weights``; ``mean_side_offsets_pct`` says where the sides lie (top,
right, bottom, left: the signed distance of each predicted side's middle from the hand side, outward
positive, % of the side, :func:`side_offsets`; each row has its own).

``--ablate`` asks what of a frame misleads a model: the photos are predicted again with bands around
their hand quadrat painted flat or blurred (``NEAR-FAR:FILL``, % of the side outside the quadrat, e.g.
``0-2.8:dark`` paints a tube frame's graduated strip dark, ``5.5-15:silver`` all beyond its tube
silver; :func:`parse_ablations`), each ablation's figures under ``ablations``. The hand corners place
the bands: a diagnosis of a model, never a measure of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError

WITHIN_SHARE = 0.015  # a corner set "within": mean corner error at most 1.5 % of the quadrat side
# what an ablation paints a band with (--ablate): flat colours of the two looks a frame's parts take
# (a dark strip or tape, a silver tube or tape) and a blur that keeps colour and takes texture and edges
ABLATION_FILLS = {"dark": (60, 70, 70), "silver": (200, 205, 210), "blur": None}
BLUR_SHARE = 0.01  # the blur's sigma as a share of the quadrat side
REAL_SUBFOLDER = Path("real_quadrats") / "coralscop"
CORNERS_FILE = "corners.json"


def load_hand_annotations(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Per photo name of ``folder/corners.json``: ``corners`` (4, 2) px TL, TR, BR, BL as stored, and
    ``size`` (width, height) of the stored file as the annotation declares it, or None.

    Raises:
        QuadratsegError: the file is missing, is not JSON of the expected layout, a photo's corners
            are not 4 finite (x, y) pairs, or its width and height are not positive whole numbers.
    """
    path = Path(folder) / CORNERS_FILE
    if not path.is_file():
        raise QuadratsegError(
            f"{path} does not exist: the real-photo evaluation needs the photos' hand corners there "
            '({"photos": {name: {"corners": [[x, y], ...4]}}}); give --photos a folder that has one'
        )
    try:
        photos = json.loads(path.read_text(encoding="utf-8"))["photos"]
        out = {
            str(name): {
                "corners": np.asarray(entry["corners"], dtype=np.float64),
                "size": (
                    (int(entry["width"]), int(entry["height"]))
                    if entry.get("width") is not None or entry.get("height") is not None
                    else None
                ),
            }
            for name, entry in photos.items()
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise QuadratsegError(
            f"{path} is not a corners file ({type(exc).__name__}: {exc}); expected "
            '{"photos": {name: {"corners": [[x, y], ...4]}}}'
        ) from exc
    for name, entry in out.items():
        corners = entry["corners"]
        if corners.shape != (4, 2) or not np.isfinite(corners).all():
            raise QuadratsegError(
                f"{path}: the corners of {name} are not 4 finite (x, y) pairs (shape {corners.shape}); "
                "fix the file"
            )
        if entry["size"] is not None and min(entry["size"]) <= 0:
            raise QuadratsegError(f"{path}: {name} has width and height {entry['size']}; fix the file")
    if not out:
        raise QuadratsegError(f"{path} lists no photo; nothing to evaluate")
    return out


def load_hand_corners(folder: str | Path) -> dict[str, np.ndarray]:
    """Hand corners (4, 2) px TL, TR, BR, BL per photo name of ``folder/corners.json``, in the upright
    photos the readers show (:func:`upright_hand_corners`; only the photos' headers are read).

    Raises:
        QuadratsegError: corners.json is missing or malformed (:func:`load_hand_annotations`), a photo
            is missing or unreadable, or its annotated size is not the file's (the message names it).
    """
    folder = Path(folder)
    return {
        name: upright_hand_corners(folder / name, entry["corners"], entry["size"])
        for name, entry in load_hand_annotations(folder).items()
    }


def upright_hand_corners(
    path: str | Path, corners_xy: np.ndarray, size: tuple[int, int] | None
) -> np.ndarray:
    """A photo's hand corners (4, 2), given in its stored pixels, in the upright picture the readers
    show (EXIF orientation applied, :func:`quadratseg.images.upright_points`).

    Raises:
        QuadratsegError: the annotation's ``size`` (width, height) is not the stored file's (the corners
            are in another pixel frame: a resized copy, another photo).
        ImageReadError: the photo is missing or not an image.
    """
    from quadratseg.images import TRANSPOSED_ORIENTATIONS, exif_orientation, image_size, upright_points

    orientation = exif_orientation(path)
    width, height = image_size(path)
    stored = (height, width) if orientation in TRANSPOSED_ORIENTATIONS else (width, height)
    if size is not None and tuple(size) != stored:
        raise QuadratsegError(
            f"{CORNERS_FILE} annotates {Path(path).name} at {size[0]} x {size[1]} px but the file is "
            f"{stored[0]} x {stored[1]} px (as stored): its corners are in another pixel frame; annotate "
            "this file or fix its width and height"
        )
    return upright_points(corners_xy, orientation, stored)


def quadrat_side(corners_xy: np.ndarray) -> float:
    """Mean edge length (px) of a quadrilateral (4, 2) TL, TR, BR, BL."""
    c = np.asarray(corners_xy, dtype=np.float64)
    return float(np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1).mean())


def corner_error(predicted_xy: np.ndarray, truth_xy: np.ndarray) -> tuple[float, float]:
    """(mean distance px, that distance as a share of the true quadrat's side) of 4 predicted corners
    (4, 2) px from the true ones; (nan, nan) when a predicted corner is missing (NaN).

    Examples:
        >>> truth = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], dtype=float)
        >>> corner_error(truth + [1.0, 0.0], truth)
        (1.0, 0.01)
    """
    p, t = np.asarray(predicted_xy, dtype=np.float64), np.asarray(truth_xy, dtype=np.float64)
    if p.shape != (4, 2) or not np.isfinite(p).all():
        return float("nan"), float("nan")
    mean = float(np.linalg.norm(p - t, axis=1).mean())
    return mean, mean / quadrat_side(t)


def side_offsets(predicted_xy: np.ndarray, truth_xy: np.ndarray) -> np.ndarray:
    """Signed distances (4,) of the predicted sides' middles from the true sides (top, right, bottom,
    left), outward positive, as shares of the true quadrat's side; NaN when a corner is missing.

    Examples:
        >>> truth = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], dtype=float)
        >>> side_offsets(truth + [[-1, -2], [1, -2], [1, 3], [-1, 3]], truth).round(3).tolist()
        [0.02, 0.01, 0.03, 0.01]
    """
    p, t = np.asarray(predicted_xy, dtype=np.float64), np.asarray(truth_xy, dtype=np.float64)
    if p.shape != (4, 2) or not np.isfinite(p).all():
        return np.full(4, np.nan)
    centre, side = t.mean(axis=0), quadrat_side(t)
    out = np.empty(4)
    for i in range(4):
        a, b = t[i], t[(i + 1) % 4]
        normal = np.array([b[1] - a[1], a[0] - b[0]]) / np.linalg.norm(b - a)
        if np.dot(normal, (a + b) / 2 - centre) < 0:
            normal = -normal
        out[i] = np.dot((p[i] + p[(i + 1) % 4]) / 2 - (a + b) / 2, normal) / side
    return out


def photo_row(name: str, prediction: Any, truth_xy: np.ndarray) -> dict[str, Any]:
    """One photo's row from a corners :class:`~grid_pose_detection.predictor.PosePrediction`."""
    found = prediction.homography is not None
    mean_px, share = corner_error(prediction.keypoints_xy, truth_xy)
    corners = prediction.keypoints_xy
    return {
        "photo": name,
        "found": found,
        "reason": "" if found else (prediction.warp_error or "no frame"),
        "corners_xy": None if not np.isfinite(corners).all() else np.round(corners, 2).tolist(),
        "mean_error_px": None if not np.isfinite(mean_px) else round(mean_px, 2),
        "mean_error_pct": None if not np.isfinite(share) else round(100 * share, 3),
        "within_1_5pct": bool(found and np.isfinite(share) and share <= WITHIN_SHARE),
        "side_offsets_pct": _pct_or_none(side_offsets(corners, truth_xy)),
        "refined": None if prediction.refined is None else prediction.refined.tolist(),
        "side_straightness": (
            None
            if prediction.side_straightness is None
            else np.round(prediction.side_straightness, 3).tolist()
        ),
    }


def _pct_or_none(shares: np.ndarray) -> list[float] | None:
    return None if not np.isfinite(shares).all() else np.round(100 * shares, 2).tolist()


def evaluate_photos(
    predictor: Any, folder: str | Path, ablation: list[tuple[float, float, str]] | None = None
) -> list[dict[str, Any]]:
    """Rows (see :func:`photo_row`) of every photo of ``folder/corners.json``, predicted one by one with
    ``predictor`` (a corners :class:`~grid_pose_detection.predictor.PosePredictor`); a photo that cannot
    be read or predicted is a row with ``found`` False and its reason. ``ablation`` (see
    :func:`parse_ablations`): the bands around each photo's hand quadrat painted before the model sees
    it (:func:`ablate_photo`)."""
    from quadratseg.images import read_image_rgb

    folder = Path(folder)
    rows = []
    for name, entry in sorted(load_hand_annotations(folder).items()):
        try:
            truth = upright_hand_corners(folder / name, entry["corners"], entry["size"])
            image = read_image_rgb(folder / name)
            if ablation:
                image = ablate_photo(image, truth, ablation)
            (prediction,) = predictor.predict([image])
        except (OSError, ValueError, QuadratsegError) as exc:
            rows.append(
                {
                    "photo": name,
                    "found": False,
                    "reason": f"not evaluated: {type(exc).__name__}: {exc}",
                    "corners_xy": None,
                    "mean_error_px": None,
                    "mean_error_pct": None,
                    "within_1_5pct": False,
                    "side_offsets_pct": None,
                    "refined": None,
                    "side_straightness": None,
                }
            )
            continue
        rows.append(photo_row(name, prediction, truth))
    return rows


def parse_ablations(spec: Any) -> list[tuple[str, list[tuple[float, float, str]]]]:
    """The ablations of ``--ablate``: ``(name, [(near, far, fill), ...])`` each, bands in shares of the side.

    ``spec``: ablations separated by commas (a string, or the tuple the command line makes of one),
    each one or more ``NEAR-FAR:FILL`` bands joined by ``+``; ``NEAR`` and ``FAR`` in % of the quadrat
    side outside its hand corners (:func:`quadratseg.warp.band_outside_quadrat`), ``FILL`` one of
    :data:`ABLATION_FILLS`.

    Raises:
        QuadratsegError: a band that does not read so (the message shows the form).

    Examples:
        >>> parse_ablations("0-2.8:dark,0-2.8:dark+5.5-15:silver")[1]
        ('0-2.8:dark+5.5-15:silver', [(0.0, 0.028, 'dark'), (0.055, 0.15, 'silver')])
    """
    items = list(spec) if isinstance(spec, list | tuple) else [spec]
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not names:
        raise QuadratsegError("--ablate: no ablation given; write NEAR-FAR:FILL (e.g. 0-2.8:dark)")
    out = []
    for name in names:
        bands = []
        for band in name.split("+"):
            try:
                span, fill = band.split(":")
                near, far = (round(float(v) / 100.0, 6) for v in span.split("-"))
            except ValueError:
                raise QuadratsegError(
                    f"--ablate: cannot read {band!r}; write NEAR-FAR:FILL with NEAR and FAR in % of the side "
                    f"outside the quadrat and FILL one of {', '.join(ABLATION_FILLS)} (e.g. 0-2.8:dark), "
                    "bands of one ablation joined by +, ablations by commas"
                ) from None
            if fill not in ABLATION_FILLS or not 0.0 <= near < far:
                raise QuadratsegError(
                    f"--ablate: {band!r} needs 0 <= NEAR < FAR and FILL one of {', '.join(ABLATION_FILLS)}"
                )
            bands.append((near, far, fill))
        out.append((name, bands))
    return out


def ablate_photo(
    image_rgb: np.ndarray, corners_xy: np.ndarray, bands: list[tuple[float, float, str]]
) -> np.ndarray:
    """A copy of a photo (H, W, 3) uint8 with each band around its quadrat (``corners_xy`` (4, 2) px, TL TR
    BR BL) painted: flat with an :data:`ABLATION_FILLS` colour, or blurred (sigma ``BLUR_SHARE`` of the
    side) for ``blur``; bands in order, a later one over an earlier one."""
    import cv2

    from quadratseg.warp import band_outside_quadrat

    out = np.array(image_rgb, copy=True)
    for near, far, fill in bands:
        mask = band_outside_quadrat(out.shape[:2], corners_xy, near, far)
        if ABLATION_FILLS[fill] is None:
            sigma = max(1.0, BLUR_SHARE * quadrat_side(corners_xy))
            out[mask] = cv2.GaussianBlur(out, (0, 0), sigma)[mask]
        else:
            out[mask] = ABLATION_FILLS[fill]
    return out


def mean_side_offsets(rows: list[dict[str, Any]]) -> list[float] | None:
    """Mean signed side offsets (% of the side: top, right, bottom, left, outward positive) over the rows
    whose frame was found; None when none was."""
    found = [r["side_offsets_pct"] for r in rows if r["found"] and r.get("side_offsets_pct") is not None]
    return np.round(np.mean(found, axis=0), 2).tolist() if found else None


def summarize(rows: list[dict[str, Any]], weights: str | None) -> dict[str, Any]:
    """``{"photos", "found", "within_1_5pct", "mean_error_pct", "weights"}`` of the rows; the mean error
    is over the photos whose frame was found (None when none was)."""
    found = [r for r in rows if r["found"] and r["mean_error_pct"] is not None]
    return {
        "photos": len(rows),
        "found": sum(1 for r in rows if r["found"]),
        "within_1_5pct": sum(1 for r in rows if r["within_1_5pct"]),
        "mean_error_pct": round(float(np.mean([r["mean_error_pct"] for r in found])), 3) if found else None,
        "weights": weights,
    }


def default_photos_folder(settings: Any = None) -> Path:
    """``real_quadrats/coralscop`` of the shared data folder (the settings', else ``../shared/data``)."""
    root = getattr(settings, "shared_data_dir", None) if settings is not None else None
    if root is None:
        root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(root) / REAL_SUBFOLDER


def real_frames(
    predictor: Any,
    weights: str | Path | None,
    folder: str | Path,
    ablation: list[tuple[float, float, str]] | None = None,
) -> dict[str, Any]:
    """The summary of a corners predictor on the real photos of ``folder`` (for ``summary.json``'s
    ``grid_pose_detection.real_frames``: :func:`summarize`'s figures and where the sides lie,
    ``mean_side_offsets_pct``), with the per-photo rows under ``rows``; with ``ablation``, on the photos
    with those bands painted (:func:`evaluate_photos`)."""
    rows = evaluate_photos(predictor, folder, ablation)
    return {
        **summarize(rows, None if weights is None else str(weights)),
        "mean_side_offsets_pct": mean_side_offsets(rows),
        "rows": rows,
    }


def evaluate_real(
    weights: str,
    photos: str | None = None,
    out: str | None = None,
    refine: bool = True,
    conf: float | None = None,
    kpt_conf: float | None = None,
    imgsz: int | None = None,
    ablate: str | None = None,
) -> str:
    """Evaluate a corner model on real photos with hand corners (see the module docstring).

    Args:
        weights: trained gridcorners model (its model card's thresholds are used unless given).
        photos: folder with the photos and corners.json (default: the shared data's
            real_quadrats/coralscop).
        out: JSON file to write the summary and rows to (atomically); none when not given.
        refine: sub-pixel refinement and the frame check (``--no-refine``: the model's corners as they are).
        conf: box confidence threshold (default: the card's, else 0.25).
        kpt_conf: keypoint confidence threshold (default: the card's, else 0.5).
        imgsz: inference size (default: the training size).
        ablate: what of a frame misleads the model: the photos again with bands around their hand
            quadrat painted (:func:`parse_ablations`, e.g. ``0-2.8:dark,5.5-15:silver``), each ablation's
            figures under ``ablations``. The hand corners place the bands, so this diagnoses a model;
            it is no measure of one.

    Returns:
        The summary and per-photo rows as JSON.
    """
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task
    from quadratseg.atomic import atomic_write_json
    from quadratseg.cli import current_settings, device, weights_path

    ablations = parse_ablations(ablate) if ablate is not None else []  # refused before the model loads
    weights = weights_path(weights)
    folder = Path(photos) if photos else default_photos_folder(current_settings())
    if not folder.is_dir():
        raise QuadratsegError(
            f"{folder} is not a folder of photos; give --photos DIR (photos and corners.json)"
        )
    predictor = PosePredictor(
        weights,
        get_task("gridcorners"),
        conf=conf,
        kpt_conf=kpt_conf,
        imgsz=imgsz,
        device=device(),
        refine=refine,
    )
    result = real_frames(predictor, weights, folder)
    if ablations:
        result["ablations"] = [
            {"ablation": name, **real_frames(predictor, None, folder, bands)} for name, bands in ablations
        ]
    result["refine"] = bool(refine)
    result["within_share"] = WITHIN_SHARE
    result["photos_folder"] = str(folder)
    if out:
        atomic_write_json(out, result)
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(evaluate_real, name="grid_pose_detection.evaluate_real")
