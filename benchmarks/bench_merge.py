"""Joining colonies cut by prediction windows (``coral_seg_yolo.predictor.merge_across_windows``).

    .venv/bin/python benchmarks/bench_merge.py [--size 1920] [--colonies 40] [--tile 640] [--overlap 0.2]

Non-overlapping synthetic colonies (ellipses, 40-150 px radii, several genera) on a ``--size`` px
image are cut into the pieces the overlapping windows of ``predict --method overlapping`` see; the
pieces are joined back. Printed: pieces in, colonies out (must equal ``--colonies``), pixels that
differ from the true colonies (must be 0), time, and the time of the plain numpy work the merge
cannot avoid (pasting every piece into its colony's box) as the reference ratio.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import median_time


def colonies(size: int, count: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """``count`` non-touching ellipses as (label, full-frame bool mask)."""
    yy, xx = np.mgrid[0:size, 0:size]
    taken = np.zeros((size, size), bool)
    out: list[tuple[str, np.ndarray]] = []
    labels = ["Acropora", "Porites", "Pocillopora", "Montipora"]
    while len(out) < count:
        rx, ry = rng.uniform(40, 150, 2)
        cx, cy = rng.uniform(rx, size - rx), rng.uniform(ry, size - ry)
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        if (mask & taken).any():
            continue
        taken |= np.pad(mask, 2)[:-4, :-4] | np.pad(mask, 2)[4:, 4:] | mask  # keep a gap
        out.append((labels[len(out) % len(labels)], mask))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--colonies", type=int, default=40)
    parser.add_argument("--tile", type=int, default=640)
    parser.add_argument("--overlap", type=float, default=0.2)
    args = parser.parse_args()
    from coral_seg_yolo.predictor import merge_across_windows, prediction_windows
    from quadratseg.instances import Instance

    truth = colonies(args.size, args.colonies, np.random.default_rng(0))
    windows = prediction_windows(args.size, args.size, args.tile, args.overlap)
    found = []
    for window in windows:
        x0, y0, x1, y1 = window
        pieces = [
            Instance.from_mask(label, 0.9, mask[y0:y1, x0:x1], (x0, y0))
            for label, mask in truth
            if mask[y0:y1, x0:x1].any()
        ]
        found.append((window, pieces))
    n_pieces = sum(len(p) for _, p in found)
    merged = merge_across_windows(found)
    wrong = 0
    frame = (args.size, args.size)
    for label, mask in truth:
        best = max(
            (m for m in merged if m.label == label), key=lambda m: np.count_nonzero(m.full_mask(frame) & mask)
        )
        wrong += int(np.count_nonzero(best.full_mask(frame) ^ mask))

    def paste_only() -> None:  # the unavoidable work: every piece pasted once into a box
        for _, pieces in found:
            for piece in pieces:
                out = np.zeros(piece.box_mask.shape, bool)
                out |= piece.box_mask

    ours = median_time(lambda: merge_across_windows(found))
    plain = median_time(paste_only)
    print(
        f"merge on a {args.size} px image, {len(windows)} windows of {args.tile} px: {n_pieces} pieces -> "
        f"{len(merged)} colonies (truth {args.colonies}), {wrong} pixels differ from the truth; "
        f"{ours:.3f} s (pasting the pieces alone {plain:.4f} s, ratio {ours / max(plain, 1e-9):.0f})"
    )


if __name__ == "__main__":
    main()
