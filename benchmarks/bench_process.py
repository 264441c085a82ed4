"""The whole chain on one photo against the bare library calls of the same stages, and peak memory.

    .venv/bin/python benchmarks/bench_process.py [--demo outputs/demo] [--size 1920] [--repeat 3]

Uses the models ``make demo`` trained (``<demo>/runs/{gridcorners,gridpose,coralseg}``; run the
demo first). On one synthetic ``--size`` px photo it times ``pipeline.chain.run_chain`` (corner
model, refinement, matching, warp, grid model, refinement, grid mask, OpenCV Telea inpainting,
YOLO-seg with box masks, cover with intervals) against the sum of the bare calls of the same
stages on the same arrays: ``model.predict`` of each model, ``cv2.warpPerspective`` and
``cv2.inpaint`` with the same mask. The ratio is the cost of what the chain adds (target <= 1.1).
Peak memory of each path is measured in a forked process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import isolated_workdir, median_time, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default="outputs/demo")
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    demo = Path(args.demo).resolve()
    weights = {
        name: demo / "runs" / name / "weights" / "best.pt" for name in ("gridcorners", "gridpose", "coralseg")
    }
    missing = [str(p) for p in weights.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"no trained models at {', '.join(missing)}: run `make demo` first (or pass --demo)")
    work = isolated_workdir("bench-process-")

    import cv2
    import numpy as np

    from coral_seg_yolo.predictor import SegPredictor
    from grid_inpainting.inpaint import OpenCVBackend
    from grid_inpainting.masks import default_line_width, grid_mask
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task
    from pipeline.chain import ChainModels, run_chain
    from quadratseg.images import read_image_rgb
    from quadratseg.synth import SynthConfig, generate_dataset
    from quadratseg.synth.dataset import export_image_path, load_truth

    synth = generate_dataset(work / "s", SynthConfig(images=1, size=args.size))
    truth = load_truth(synth)[0]
    photo = read_image_rgb(
        export_image_path(synth / "cvat_exports" / "corners", truth["subset"], truth["name"])
    )
    side = args.size
    models = ChainModels(
        segment=SegPredictor(weights["coralseg"], imgsz=320),  # its card's threshold, as the chain
        corners=PosePredictor(
            weights["gridcorners"],
            get_task("gridcorners"),
            conf=0.01,
            kpt_conf=0.2,
            imgsz=320,
            warp_size=(side, side),
        ),
        grid=PosePredictor(weights["gridpose"], get_task("gridpose"), conf=0.01, kpt_conf=0.2, imgsz=256),
        inpaint=OpenCVBackend("telea"),
    )
    result = run_chain(photo, models)  # warm-up, and the arrays the bare calls get
    print("chain status:", result.status)
    if result.homography is None or result.grid_xy is None:
        raise SystemExit(
            "the demo's models did not find the quadrat and grid on this photo: nothing to compare"
        )
    warped = result.warped
    mask = grid_mask(result.grid_xy, (side, side), default_line_width((side, side)))

    def bare() -> None:
        bgr = np.ascontiguousarray(photo[..., ::-1])
        models.corners.model.predict(bgr, imgsz=320, conf=0.01, verbose=False)
        w = cv2.warpPerspective(photo, result.homography, (side, side))
        models.grid.model.predict(np.ascontiguousarray(w[..., ::-1]), imgsz=256, conf=0.01, verbose=False)
        clean = cv2.inpaint(warped, mask.astype(np.uint8), models.inpaint.radius, cv2.INPAINT_TELEA)
        models.segment.model.predict(
            np.ascontiguousarray(clean[..., ::-1]), imgsz=320, conf=0.25, verbose=False
        )

    def chain() -> None:
        run_chain(photo, models)

    bare()
    t_chain = median_time(chain, args.repeat)
    t_bare = median_time(bare, args.repeat)
    print(
        f"one {args.size} px photo: chain {t_chain:.2f} s, bare library calls {t_bare:.2f} s, "
        f"ratio {t_chain / t_bare:.2f}"
    )
    print(f"peak memory: chain {peak_rss_mb(chain):.0f} MiB, bare {peak_rss_mb(bare):.0f} MiB")


if __name__ == "__main__":
    main()
