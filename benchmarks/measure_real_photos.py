"""Statistics of the real quadrat photos beside the varied and the simple synthetic worlds, and
the CPU time to render one synthetic photo.

    .venv/bin/python benchmarks/measure_real_photos.py [--data ../shared/data] [--images 12] [--size 768]
        [--timing-sizes 768,1920]

Real photos: every JPEG in ``DATA/real_quadrats/coralscop`` (metal frames) and ``DATA/coralnet``
(MCR LTER black frames), read in their displayed orientation. Synthetic: ``--images`` raw photos
of each world at ``--size`` px (seed 0). Every photo is scaled to a 384 px shorter side before
measuring (see :mod:`quadratseg.synth.stats` for what each figure is). Prints, per figure, the
mean +- standard deviation over the photos of each set and the distance of each world's mean
from the real mean in units of the real photos' spread (std, floored at a tenth of the mean's
magnitude). Then the photos' shapes and how much of them the quadrat fills
(:func:`quadratseg.synth.stats.quadrat_fill`; real: the CoralSCoP photos' hand corners in
``corners.json``; synthetic: the truth, over the varied photos and over its tube frames alone, from
``--fill-images`` photos). Then the CPU seconds per photo of each world at each ``--timing-sizes``
(one process, median of 3 photos). Nothing of the real photos is written anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _common import isolated_workdir


def real_photo_paths(data: Path) -> list[Path]:
    """The real quadrat photos under the shared data folder."""
    return sorted((data / "real_quadrats" / "coralscop").glob("*.jpg")) + sorted(
        (data / "coralnet").glob("*.jpg")
    )


def write_contact_sheet(photos: list[np.ndarray], path: Path, columns: int = 4, width: int = 192) -> None:
    """Synthetic photos (uint8 RGB) as thumbnails ``width`` px wide, ``columns`` per row, in one PNG."""
    import cv2

    from quadratseg.atomic import atomic_write_bytes

    thumbs = [
        cv2.resize(p, (width, round(width * p.shape[0] / p.shape[1])), interpolation=cv2.INTER_AREA)
        for p in photos
    ]
    h = max(t.shape[0] for t in thumbs)
    thumbs = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in thumbs]
    while len(thumbs) % columns:
        thumbs.append(np.zeros_like(thumbs[0]))
    rows = [np.hstack(thumbs[i : i + columns]) for i in range(0, len(thumbs), columns)]
    ok, data = cv2.imencode(
        ".png", cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())


def shape_and_fill_rows(data: Path, paths: list[Path], images: int, size: int) -> dict[str, dict]:
    """Per set (real, varied, varied tube frames): photos, share of square ones, quadrat fill mean and std.

    Varied: ``images`` raw photos rendered as ``generate_dataset`` renders them (seed 0, ``size`` px
    wide, 3:4), measured from their truth.
    """
    import json

    from quadratseg.images import read_image_rgb
    from quadratseg.synth.dataset import genera_for_image
    from quadratseg.synth.scene import render_quadrat
    from quadratseg.synth.stats import quadrat_fill

    def row(shapes: list[tuple[int, int]], fills: list[float]) -> dict:
        return {
            "photos": len(shapes),
            "square": float(np.mean([w == h for w, h in shapes])) if shapes else float("nan"),
            "fill": (float(np.mean(fills)), float(np.std(fills))) if fills else (float("nan"), float("nan")),
        }

    shapes = [read_image_rgb(p).shape[1::-1] for p in paths]
    hand = json.loads((data / "real_quadrats" / "coralscop" / "corners.json").read_text(encoding="utf-8"))
    fills = [quadrat_fill(e["corners"], (e["width"], e["height"])) for e in hand["photos"].values()]
    rows = {"real": row(shapes, fills)}
    varied: list[tuple[str, tuple[int, int], float]] = []
    for i in range(images):
        rng = np.random.default_rng([0, i])
        n = int(rng.integers(7, 13))
        q = render_quadrat(rng, (size, round(size * 0.75)), size, genera_for_image(i, 0, n), world="varied")
        varied.append((q.shot_info["frame"], q.raw_size, quadrat_fill(q.corners_raw_xy, q.raw_size)))
    rows["varied"] = row([v[1] for v in varied], [v[2] for v in varied])
    tube = [v for v in varied if v[0] == "tube"]
    rows["varied, tube frames"] = row([v[1] for v in tube], [v[2] for v in tube])
    return rows


def print_shapes_and_fill(data: Path, paths: list[Path], images: int, size: int) -> None:
    """Print :func:`shape_and_fill_rows` (real fill: the CoralSCoP photos with hand corners)."""
    print("\nphoto shape and quadrat fill (mean inner side / shorter photo side)")
    for name, r in shape_and_fill_rows(data, paths, images, size).items():
        fill = f"{r['fill'][0]:.3f} +-{r['fill'][1]:.3f}"
        print(f"{name:20s} {r['photos']:4d} photos, square {r['square']:.2f}, fill {fill}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--timing-sizes", default="768,1920")
    parser.add_argument("--fill-images", type=int, default=60, help="varied photos for shape and fill")
    parser.add_argument(
        "--contact-sheet", default="", help="write the varied photos' contact sheet (PNG) here"
    )
    args = parser.parse_args()

    from quadratseg.images import read_image_rgb
    from quadratseg.synth import SynthConfig, generate_dataset, load_truth
    from quadratseg.synth.dataset import export_image_path, genera_for_image
    from quadratseg.synth.scene import render_quadrat
    from quadratseg.synth.stats import STAT_NAMES, photo_stats, summarize

    paths = real_photo_paths(Path(args.data))
    if not paths:
        raise SystemExit(f"no real photos under {args.data}; pass --data ../shared/data")
    sets = {"real": summarize(photo_stats(read_image_rgb(p)) for p in paths)}
    work = isolated_workdir("measure-real-")
    for world in ("varied", "simple"):
        out = generate_dataset(
            work / world, SynthConfig(images=args.images, seed=0, size=args.size, world=world)
        )
        photos = [
            read_image_rgb(export_image_path(out / "cvat_exports" / "corners", t["subset"], t["name"]))
            for t in load_truth(out)
        ]
        sets[world] = summarize(photo_stats(p) for p in photos)
        if world == "varied" and args.contact_sheet:
            write_contact_sheet(photos, Path(args.contact_sheet))
    real = sets["real"]
    print(f"{len(paths)} real photos, {args.images} synthetic photos per world at {args.size} px")
    print(f"{'figure':16s} {'real':>16s} {'varied':>16s} {'simple':>16s} {'d varied':>9s} {'d simple':>9s}")
    for k in STAT_NAMES:
        unit = max(real[k][1], 0.1 * abs(real[k][0]), 1e-6)
        cells = [f"{sets[s][k][0]:8.3f} +-{sets[s][k][1]:6.3f}" for s in ("real", "varied", "simple")]
        dv, ds = (abs(sets[s][k][0] - real[k][0]) / unit for s in ("varied", "simple"))
        print(f"{k:16s} {cells[0]:>16s} {cells[1]:>16s} {cells[2]:>16s} {dv:9.2f} {ds:9.2f}")

    print_shapes_and_fill(Path(args.data), paths, args.fill_images, args.size)

    print("\nCPU seconds per photo (render only, one process, median of 3)")
    for size in (int(s) for s in args.timing_sizes.split(",") if s):
        row = []
        for world in ("simple", "varied"):
            times = []
            for i in range(3):
                rng = np.random.default_rng([0, i])
                start = time.process_time()
                render_quadrat(rng, (size, round(size * 0.75)), size, genera_for_image(i, 0, 10), world=world)
                times.append(time.process_time() - start)
            row.append(f"{world} {statistics.median(times):.2f}")
        print(f"{size:5d} px: " + ", ".join(row))


if __name__ == "__main__":
    main()
