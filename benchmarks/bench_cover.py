"""Observed pixels of each colony after overlaps (``quadratseg.cover.visible_areas``).

    .venv/bin/python benchmarks/bench_cover.py [--size 1920] [--colonies 6 40 300] [--radius 60 150]

Colonies (disks of radii drawn from ``--radius``, boxes partly outside the frame) on a ``--size`` px
frame with one unobserved row in 100 (grid strings), two ways: ``overlapping`` (at random) and
``exclusive`` (each cut to the pixels it owns, as ``pipeline.chain.reef_colonies`` gives them to the
cover). Printed per colony count: the areas' time, and the time of the plain numpy rule (paint every
colony's mask on a frame-sized owner map in order, clear the unobserved pixels, ``np.bincount``) as
the reference ratio; both must give the same areas.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import median_time


def owner_map(masks, frame_size) -> np.ndarray:
    """A frame-sized int32 map (H, W): the index of the colony painted last on each pixel, else -1."""
    width, height = frame_size
    owner = np.full((height, width), -1, dtype=np.int32)
    for i, (box, (x0, y0)) in enumerate(masks):
        h, w = box.shape
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if xa < xb and ya < yb:
            owner[ya:yb, xa:xb][box[ya - y0 : yb - y0, xa - x0 : xb - x0]] = i
    return owner


def owner_map_areas(masks, frame_size, observed_hw) -> np.ndarray:
    """The plain rule: a frame-sized owner map painted in order, then counted."""
    owner = owner_map(masks, frame_size)
    owner[~observed_hw] = -1
    return np.bincount(owner.ravel() + 1, minlength=len(masks) + 1)[1:]


def exclusive(masks, frame_size) -> list:
    """Each colony cut to the pixels it owns after the later ones, in a box of its own pixels."""
    paint = owner_map(masks, frame_size)
    out = []
    for i in range(len(masks)):
        ys, xs = np.nonzero(paint == i)
        if len(xs):
            x0, y0 = int(xs.min()), int(ys.min())
            out.append((paint[y0 : ys.max() + 1, x0 : xs.max() + 1] == i, (x0, y0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--colonies", type=int, nargs="+", default=[6, 40, 300])
    parser.add_argument("--radius", type=float, nargs=2, default=[60.0, 150.0])
    args = parser.parse_args()
    from quadratseg.cover import visible_areas

    rng = np.random.default_rng(0)
    observed = np.ones((args.size, args.size), bool)
    observed[::100] = False
    results = []
    frame = (args.size, args.size)
    for count, way in [(n, way) for n in args.colonies for way in ("overlapping", "exclusive")]:
        masks = []
        for _ in range(count):
            r = rng.uniform(*args.radius)
            yy, xx = np.mgrid[: int(2 * r), : int(2 * r)]
            disk = (yy - r) ** 2 + (xx - r) ** 2 < r**2
            origin = (int(rng.integers(-int(r), args.size)), int(rng.integers(-int(r), args.size)))
            masks.append((disk, origin))
        if way == "exclusive":
            masks = exclusive(masks, frame)
        ours = visible_areas(masks, frame, observed)
        plain = owner_map_areas(masks, frame, observed)
        assert ours.tolist() == plain.tolist(), "the areas differ from the plain rule's"
        ours_s = median_time(lambda m=masks: visible_areas(m, frame, observed), repeat=7)
        plain_s = median_time(lambda m=masks: owner_map_areas(m, frame, observed), repeat=7)
        results.append(
            {
                "colonies": count,
                "way": way,
                "visible_areas_ms": round(1000 * ours_s, 2),
                "owner_map_ms": round(1000 * plain_s, 2),
                "ratio": round(ours_s / plain_s, 3),
            }
        )
    print(json.dumps({"size": args.size, "radius": args.radius, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
