"""Self-checks of the synthetic set against analytic truth: where the quadrat's geometry puts things.

- :func:`projective_lattice`: image points of the quadrat's lattice by line geometry (no homography),
  to check :func:`quadratseg.warp.quadrat_homography` independently;
- :func:`string_offsets_px`: where the grid strings of a warped photo lie against their analytic place;
- :func:`matching_selfcheck`: template matching on jittered, shuffled, incomplete true grids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quadratseg.keypoints import GRID_MAX_COST, grid_template_xy, match_to_template


def projective_lattice(corners_xy: np.ndarray, depth: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Image points of the quadrat's (u, v) lattice, u, v in steps of 1 / 2**depth, by line geometry.

    The image of the quadrat's centre is where its diagonals cross, and the image of an edge
    midpoint is where the line from the centre to the vanishing point of the two other edges
    crosses that edge (parallel edges: the plain midpoint); subdividing ``depth`` times gives the
    lattice without any homography, so it checks :func:`quadrat_homography` independently.

    Returns:
        (image points (N, 2), their (u, v) in the unit quadrat (N, 2)).
    """

    def line(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.cross([*p, 1.0], [*q, 1.0])

    def meet(l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
        x = np.cross(l1, l2)
        return x[:2] / x[2]

    def split(quad: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        tl, tr, br, bl = quad
        centre = meet(line(tl, br), line(tr, bl))
        v_lr = np.cross(line(tl, bl), line(tr, br))  # vanishing point of the left/right edges
        v_tb = np.cross(line(tl, tr), line(bl, br))  # of the top/bottom edges

        def mid(a: np.ndarray, b: np.ndarray, vanishing: np.ndarray) -> np.ndarray:
            # homogeneous: a vanishing point at infinity (parallel edges) gives the parallel line
            return meet(np.cross([*centre, 1.0], vanishing), line(a, b))

        return {
            (0, 0): tl,
            (2, 0): tr,
            (2, 2): br,
            (0, 2): bl,
            (1, 1): centre,
            (1, 0): mid(tl, tr, v_lr),
            (1, 2): mid(bl, br, v_lr),
            (0, 1): mid(tl, bl, v_tb),
            (2, 1): mid(tr, br, v_tb),
        }

    n = 2**depth
    points = {(0, 0): corners_xy[0], (n, 0): corners_xy[1], (n, n): corners_xy[2], (0, n): corners_xy[3]}
    cells = [((0, 0), n)]
    while cells and cells[0][1] > 1:
        next_cells = []
        for (u0, v0), size in cells:
            quad = np.array(
                [
                    points[(u0, v0)],
                    points[(u0 + size, v0)],
                    points[(u0 + size, v0 + size)],
                    points[(u0, v0 + size)],
                ],
                dtype=np.float64,
            )
            half = size // 2
            for (a, b), xy in split(quad).items():
                points.setdefault((u0 + a * half, v0 + b * half), xy)
            next_cells += [((u0 + a * half, v0 + b * half), half) for a in (0, 1) for b in (0, 1)]
        cells = next_cells
    keys = sorted(points)
    return np.array([points[k] for k in keys]), np.array(keys, dtype=np.float64) / n


def string_offsets_px(gridded: np.ndarray, clean: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Distance (px) of each grid string of a warped image from its analytic place.

    The strings are where ``gridded`` and ``clean`` (the same photo without grid) differ; string
    j of ``cols`` lies at x = (j + 1) / (cols + 1) of the width, string i at y = (i + 1) / (rows + 1)
    of the height (pixel-corner coordinates). Each string's position is the centroid of the
    difference profile within a third of the spacing around its analytic place (inf: none there).
    """
    diff = np.abs(gridded.astype(np.float64) - clean.astype(np.float64)).sum(axis=2)
    offsets = []
    for axis, n, length in ((0, cols, diff.shape[1]), (1, rows, diff.shape[0])):
        profile = diff.mean(axis=axis)
        profile = np.clip(profile - np.median(profile), 0.0, None)
        spacing = length / (n + 1)
        for k in range(n):
            centre = (k + 1) * spacing
            lo, hi = (
                max(0, int(np.floor(centre - spacing / 3))),
                min(length, int(np.ceil(centre + spacing / 3))),
            )
            window = profile[lo:hi]
            mass = float(window.sum())
            position = float((window * (np.arange(lo, hi) + 0.5)).sum() / mass) if mass > 0 else np.inf
            offsets.append(abs(position - centre))
    return np.array(offsets)


def matching_selfcheck(truths: list[dict[str, Any]], seed: int) -> float:
    """Share of images whose jittered, shuffled, incomplete true grid (with false points) matches back.

    Success: every true detection lands on its own template point, and no missing point
    takes a true detection (a false point lying on a missing point's place may fill it: it
    cannot be told apart). Images whose frame has no grid (``grid_warped_xy`` null) are left out.
    """
    rng = np.random.default_rng([seed, 3])
    template = grid_template_xy()
    ok = 0
    truths = [t for t in truths if t.get("grid_warped_xy") is not None]  # frames without a grid
    for t in truths:
        size = t["warped_size"]
        true_xy = np.asarray(t["grid_warped_xy"])
        keep = rng.permutation(len(true_xy))[: len(true_xy) - 5]
        det = true_xy[keep] + rng.normal(0, 2.0, (len(keep), 2))
        det = np.vstack([det, rng.uniform(0, size[0], (5, 2))])
        order = rng.permutation(len(det))
        match = match_to_template(det[order], template, GRID_MAX_COST, frame_size=tuple(size))
        position = np.argsort(order)  # unshuffled detection j sits at position[j]
        kept_ok = np.array_equal(match.detection_index[keep], position[: len(keep)])
        missing = np.setdiff1d(np.arange(len(true_xy)), keep)
        taken = match.detection_index[missing]
        false_positions = set(position[len(keep) :].tolist())
        ok += int(kept_ok and all(i < 0 or int(i) in false_positions for i in taken))
    return ok / max(len(truths), 1)
