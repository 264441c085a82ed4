"""Grid pose post-processing per image: our template matching against scipy's bare linear_sum_assignment.

    .venv/bin/python benchmarks/bench_grid.py [--images 200] [--weights best.pt --imgsz 1024]

On the same cost problems (117 template points, 110 jittered detections + 10 false ones, shuffled)
it times ``match_to_template`` (Hungarian with a "missing" option, homography re-alignment,
rotation starts, outlier rejection) and a bare ``scipy.optimize.linear_sum_assignment`` on the
distance matrix; the ratio is the cost of what we add. With ``--weights`` it also times the whole
path on a 1920 px synthetic warped image: detection + matching (+ warp for corners).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import isolated_workdir


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--imgsz", type=int, default=1024)
    parser.add_argument("--task", default="gridpose")
    args = parser.parse_args()
    work = isolated_workdir("bench-grid-")  # offline switches before ultralytics is imported

    from scipy.optimize import linear_sum_assignment

    from quadratseg.keypoints import GRID_MAX_COST, grid_template_xy, match_to_template

    rng = np.random.default_rng(0)
    template = grid_template_xy()
    problems = []
    for _ in range(args.images):
        keep = rng.permutation(117)[:110]
        det = np.vstack([template[keep] * 1920 + rng.normal(0, 3, (110, 2)), rng.uniform(0, 1920, (10, 2))])
        problems.append(det[rng.permutation(len(det))])
    start = time.perf_counter()
    for det in problems:
        match_to_template(det, template, GRID_MAX_COST, frame_size=(1920, 1920))
    ours = (time.perf_counter() - start) / len(problems)
    start = time.perf_counter()
    for det in problems:
        cost = np.linalg.norm(template[:, None, :] - det[None, :, :] / 1920, axis=2)
        linear_sum_assignment(cost)
    bare = (time.perf_counter() - start) / len(problems)
    print(
        f"template matching, 117 points vs 120 detections: ours {ours * 1000:.2f} ms, "
        f"bare linear_sum_assignment {bare * 1000:.2f} ms, ratio {ours / bare:.1f}"
    )

    if args.weights:
        import cv2

        from grid_pose_detection.predictor import PosePredictor
        from grid_pose_detection.tasks import get_task
        from quadratseg.synth import SynthConfig, generate_dataset
        from quadratseg.synth.dataset import export_image_path, load_truth

        synth = generate_dataset(work / "s", SynthConfig(images=1, size=1920))
        truth = load_truth(synth)[0]
        folder = "corners" if args.task == "gridcorners" else "grid"
        image = cv2.cvtColor(
            cv2.imread(
                str(export_image_path(synth / "cvat_exports" / folder, truth["subset"], truth["name"]))
            ),
            cv2.COLOR_BGR2RGB,
        )
        predictor = PosePredictor(args.weights, get_task(args.task), imgsz=args.imgsz)
        predictor.predict([image])  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            (pred,) = predictor.predict([image])
            if pred.homography is not None:
                predictor.warp(image, pred)
            times.append(time.perf_counter() - start)
        bare = []
        for _ in range(3):
            start = time.perf_counter()
            predictor.model.predict(np.ascontiguousarray(image[..., ::-1]), imgsz=args.imgsz, verbose=False)
            bare.append(time.perf_counter() - start)
        print(
            f"{args.task} on a 1920 px image: detection + matching"
            f"{' + warp' if args.task == 'gridcorners' else ''} "
            f"{statistics.median(times):.2f} s, bare model.predict {statistics.median(bare):.2f} s, "
            f"ratio {statistics.median(times) / statistics.median(bare):.2f}"
        )


if __name__ == "__main__":
    main()
