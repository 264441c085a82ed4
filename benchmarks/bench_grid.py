"""Corner and grid models: training recipes over seeds, refinement ablation, matching cost.

    .venv/bin/python benchmarks/bench_grid.py [--images 200] [--weights best.pt --imgsz 1024]
    .venv/bin/python benchmarks/bench_grid.py --train [--seeds 0 1 2] [--layouts points instance]
        [--world varied|simple] [--synth-images 60] [--epochs N] [--tasks gridcorners gridpose]
    .venv/bin/python benchmarks/bench_grid.py --frame-check [--synth-images 40] [--seeds 0 1 2]

With ``--train`` it makes, per seed, a synthetic set of that seed (``--world varied``, the default: 60
photos of 768 px, 12 of them in the test split, as the demo's; ``--world simple --synth-images 24``: the
earlier demo's set) and trains the corner and the grid model on it with the demo's recipe of that world
(``grid_pose_detection.demo.demo_training``: the varied world's fine-tunes the shipped models, the simple
world's trains from scratch), then prints per task the mean and spread over seeds of the test-split
errors, matching success and PCK@1 %, with and without sub-pixel refinement, and the training time: one
lucky run does not decide a recipe. Targets: corners <= 5 px, grid <= 3 px. The varied world's grid model
trains on its quadrats without a grid as background images (as the demo's) and is scored on those with
one; corners outside the photo are written with visibility 0.

With ``--frame-check`` it calibrates the corner refinement's frame check
(``grid_pose_detection.predictor.corner_warp``) on the varied world: the share of frames confirmed at the
true corners moved by N(0, 1 % of the side), and of wrong quadrats confirmed (the true ones shrunk to 80 %
or 60 %, or moved by 8 to 25 % of the side in a random direction), per frame style; and on the same
reef and camera with no frame at all (``no_frame_share=1``) the share of quadrats confirmed where the frame
would be and at the wrong quadrats: each one a false frame; ``--synth-images`` photos per seed, the
seeds' samples pooled (each seed's own line first). Then the rule (sides needed, a side's evidence,
the weakest side's) swept over a grid, keeping the rules that confirm all 7 real CoralSCOP frames at their
hand corners (``../shared/data``), fewest false frames first. On those real photos it also counts the wrong
quadrats confirmed: the hand quadrat shrunk or moved as above, and with its TL corner 6 % of the side out
along its diagonal (where a model trained on the varied world puts it: the frame's joint hides that corner).

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
    parser.add_argument("--train", action="store_true", help="train with several seeds (minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layouts", nargs="+", default=["points"])
    parser.add_argument("--tasks", nargs="+", default=["gridcorners", "gridpose"], help="with --train")
    parser.add_argument("--epochs", type=int, default=0, help="override the demo recipe's epochs")
    parser.add_argument("--world", default="varied", choices=["varied", "simple"])
    parser.add_argument("--synth-images", type=int, default=0, help="default: 60 (varied), 24 (simple)")
    parser.add_argument("--frame-check", action="store_true", help="calibrate the frame check (minutes)")
    args = parser.parse_args()
    work = isolated_workdir("bench-grid-")  # offline switches before ultralytics is imported
    if args.frame_check:
        frame_check_rates(args.synth_images or 40, args.seeds)
        return
    if args.train:
        images = args.synth_images or (60 if args.world == "varied" else 24)
        train_over_seeds(work, args.seeds, args.layouts, args.epochs, args.world, images, args.tasks)
        return

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


def _score(predictor, task_name, synthetic_dir, refine):
    """Test-split figures of a predictor against the generator's truth, on the photos with the task's
    points (``grid_pose_detection.frame_model.keypoint_test_figures``)."""
    from grid_pose_detection.frame_model import keypoint_test_figures

    figures = keypoint_test_figures(predictor, synthetic_dir, task_name, refine)

    def number(key: str) -> float:  # None (no test photo with the task's points): NaN
        return float("nan") if figures[key] is None else figures[key]

    return {
        "mean_px": number("mean_px_error"),
        "matching": number("matching"),
        "pck_1pct": number("pck_1pct"),
        "found": number("found_share"),
    }


def train_over_seeds(
    work, seeds, layouts, epochs, world="varied", images=60, tasks=("gridcorners", "gridpose")
):
    """Train the demo's recipe of ``world`` per seed and layout (the ``tasks`` among gridcorners and
    gridpose) and print mean and spread of the test figures. Each seed renders its own ``world`` set of
    ``images`` photos (seed = the set's and the training's): the spread is the world's and the training's.

    The simple world's recipe trains from scratch (``grid_pose_detection.demo.TRAINING``); the varied
    world's fine-tunes the shipped models as the demo does (``demo_training``: its epochs, size and
    learning rate, the same checked starts, the thresholds of their cards: ``demo_thresholds``), with the
    grid template fitted on the set's training grids."""
    from grid_pose_detection.demo import SHORT_RUN, demo_thresholds, demo_training
    from grid_pose_detection.frame_model import truth_grid_template, truth_layout
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task
    from quadratseg.synth import SynthConfig, generate_dataset
    from quadratseg.yolo_train import load_experiment, train_yolo

    rows = []
    sets = {}
    for seed in seeds:
        sets[seed] = generate_dataset(
            work / f"synthetic-{seed}", SynthConfig(images=images, size=768, seed=seed, world=world)
        )
    print(f"synthetic sets: {images} photos of the {world} world, 768 px, seeds {seeds}")
    for task_name in tasks:
        task = get_task(task_name)
        training = demo_training(world, task_name)
        start_from = training.get("model")
        thresholds = demo_thresholds(start_from)  # as the demo's card states them
        print(f"{task_name}: {'fine-tuned from ' + start_from if start_from else 'from scratch'}, {training}")
        for layout in layouts:
            runs = []
            for seed in seeds:
                synthetic_dir = sets[seed]
                root = work / f"{task_name}-{layout}-{seed}"
                # the generator's truth; the grid model trains on the quadrats without a grid as
                # background images in the varied world, as the demo's does
                data = truth_layout(
                    synthetic_dir, root / "layout", task_name, layout=layout, backgrounds=world == "varied"
                )["data_yaml"]
                recipe = {**SHORT_RUN, **training, "seed": seed}
                if epochs:
                    recipe["epochs"] = epochs
                start = time.perf_counter()
                config = load_experiment(task.config, recipe)
                run = train_yolo(config, data, root / "runs", task_name, from_scratch=start_from is None)
                seconds = time.perf_counter() - start
                template = (
                    truth_grid_template(synthetic_dir)
                    if task_name == "gridpose" and world == "varied"
                    else None
                )
                predictor = PosePredictor(
                    run["best"],
                    task,
                    template,
                    conf=thresholds["conf"],
                    kpt_conf=thresholds["kpt_conf"],
                    imgsz=training["imgsz"],
                )
                scores = _score(predictor, task_name, synthetic_dir, True)
                plain = _score(predictor, task_name, synthetic_dir, False)
                scores.update({f"{k}_model_alone": v for k, v in plain.items()})
                scores["train_s"] = seconds
                runs.append(scores)
                print(
                    f"{task_name} {layout} seed {seed}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()),
                    flush=True,
                )
            for key in runs[0]:
                values = np.array([r[key] for r in runs])
                rows.append((task_name, layout, key, float(np.nanmean(values)), float(np.nanstd(values))))
    print(f"\n{'task':12} {'layout':9} {'figure':22} {'mean':>9} {'spread (sd)':>12}   over seeds {seeds}")
    for task_name, layout, key, mean, sd in rows:
        print(f"{task_name:12} {layout:9} {key:22} {mean:9.3f} {sd:12.3f}")


def frame_check_rates(images: int, seeds: list[int]) -> dict:
    """Frames confirmed by the refinement's frame check on the varied world, and the rule swept over its
    thresholds (see the module docstring)."""
    from grid_pose_detection.evaluate_real import default_photos_folder, load_hand_corners
    from grid_pose_detection.predictor import DEFAULT_FRAME_CHECK, FrameCheck
    from quadratseg.images import read_image_rgb
    from quadratseg.keypoint_refine import refine_quadrat_corners
    from quadratseg.synth.scene import render_quadrat

    def straightness(image, corners):
        return refine_quadrat_corners(image, corners).side_straightness

    # (kind, frame style, (4,) side straightness, seed): kind "true" (a frame at its corners), "wrong" (a
    # wrong quadrat on a photo with a frame), "none" (a photo with no frame), "real" (a real frame, hand
    # corners), "real_wrong" (a wrong quadrat on a real photo); seed None for the real photos
    samples: list[tuple[str, str, np.ndarray, int | None]] = []
    for seed, i in ((seed, i) for seed in seeds for i in range(images)):
        rng = np.random.default_rng([seed, i, 1])
        q = render_quadrat(
            np.random.default_rng([seed, i]), (768, 576), 256, ["Acropora", "Porites"], world="varied"
        )
        truth = q.corners_raw_xy
        side = float(np.linalg.norm(np.roll(truth, -1, 0) - truth, axis=1).mean())
        centre = truth.mean(axis=0)
        style = str(q.shot_info.get("frame", "varied"))
        samples.append(("true", style, straightness(q.raw, truth + rng.normal(0, 0.01 * side, (4, 2))), seed))
        angle = rng.uniform(0, 2 * np.pi, 2)
        wrong = [
            (truth - centre) * 0.8 + centre,
            (truth - centre) * 0.6 + centre,
            *(truth + rng.uniform(0.08, 0.25) * side * np.array([np.cos(a), np.sin(a)]) for a in angle),
        ]
        samples += [("wrong", style, straightness(q.raw, w), seed) for w in wrong]
        # the same reef and camera with no frame at all: a quadrat confirmed there is a false frame
        bare = render_quadrat(
            np.random.default_rng([seed, i]),
            (768, 576),
            256,
            ["Acropora", "Porites"],
            world="varied",
            no_frame_share=1.0,
        )
        where = [bare.corners_raw_xy, *(w - centre + bare.corners_raw_xy.mean(axis=0) for w in wrong)]
        samples += [("none", "none", straightness(bare.raw, w), seed) for w in where]
    real = default_photos_folder()
    if real.is_dir():
        rng = np.random.default_rng(0)
        for name, corners in sorted(load_hand_corners(real).items()):
            image = read_image_rgb(real / name)
            samples.append(("real", "real", straightness(image, corners), None))
            # wrong quadrats on the real photo: as on the synthetic ones, and one corner 6 % of the side
            # out along its diagonal (the frame's joint hides the TL corner of every one of these photos)
            side = float(np.linalg.norm(np.roll(corners, -1, 0) - corners, axis=1).mean())
            centre = corners.mean(axis=0)
            angle = rng.uniform(0, 2 * np.pi, 2)
            wrong = [
                (corners - centre) * 0.8 + centre,
                (corners - centre) * 0.6 + centre,
                *(corners + rng.uniform(0.08, 0.25) * side * np.array([np.cos(a), np.sin(a)]) for a in angle),
                corners + np.array([[-1.0, -1.0], [0, 0], [0, 0], [0, 0]]) * 0.06 * side,
            ]
            kinds = ("shrunk", "shrunk", "moved", "moved", "corner out")
            for kind, quadrat in zip(kinds, wrong, strict=True):
                samples.append(("real_wrong", kind, straightness(image, quadrat), None))

    def rate(kind, style=None, seed=None, **rule):
        check = FrameCheck(**rule) if rule else DEFAULT_FRAME_CHECK
        hits = [
            check.confirmed(x)
            for k, st, x, sd in samples
            if k == kind and style in (None, st) and seed in (None, sd)
        ]
        return (float(np.mean(hits)) if hits else float("nan")), len(hits)

    for seed in seeds if len(seeds) > 1 else []:
        (t, n), (w, _), (f, _) = (rate(kind, seed=seed) for kind in ("true", "wrong", "none"))
        print(
            f"seed {seed}: frames {t:.2f} of {n}, wrong quadrats {w:.2f}, no frame {f:.2f} (the rule in use)"
        )
    seeds_text = ", ".join(str(seed) for seed in seeds)
    print(f"frame check on {images} varied-world photos (768 x 576) per seed, seeds {seeds_text}:")
    print("the rule in use")
    print(f"{'frame':10} {'frames at their corners':>24} {'wrong quadrats':>15} {'no frame':>9}")
    for style in sorted({st for k, st, _, _ in samples if k == "true"}):
        (t, n), (w, _) = rate("true", style), rate("wrong", style)
        print(f"{style:10} {t:18.2f} of {n:3d} {w:15.2f} {'':>9}")
    (t, n), (w, _), (f, _), (r, nr) = rate("true"), rate("wrong"), rate("none"), rate("real")
    rw, nrw = rate("real_wrong")
    print(f"{'all':10} {t:18.2f} of {n:3d} {w:15.2f} {f:9.2f}   real frames at hand corners {r:.2f} of {nr}")
    by_kind = ", ".join(
        f"{kind} {rate('real_wrong', kind)[0]:.2f} of {rate('real_wrong', kind)[1]}"
        for kind in ("shrunk", "moved", "corner out")
    )
    print(f"{'real':10} {r:18.2f} of {nr:3d} {rw:15.2f} of {nrw} ({by_kind})")
    rows = []
    for sides in (2, 3, 4):
        for evidence in (0.3, 0.35, 0.4, 0.5, 0.6, 0.7):
            for weakest in (0.0, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
                rule = {"sides": sides, "evidence": evidence, "weakest": weakest}
                rows.append(
                    (
                        rule,
                        *(rate(kind, **rule)[0] for kind in ("true", "wrong", "none", "real", "real_wrong")),
                    )
                )
    # rules that confirm every real frame at its hand corners; of those, the ones no other beats on both
    # counts (as many frames confirmed or more with as few false frames, wrong quadrats and no frame
    # together, or fewer), fewest false first
    usable = [row for row in rows if row[4] == 1.0 or np.isnan(row[4])]

    def beaten(row):
        return any(
            o[1] >= row[1]
            and o[2] + o[3] <= row[2] + row[3]
            and (o[1] > row[1] or o[2] + o[3] < row[2] + row[3])
            for o in usable
        )

    front = sorted(
        (row for row in usable if not beaten(row) or FrameCheck(**row[0]) == DEFAULT_FRAME_CHECK),
        key=lambda r: (r[2] + r[3], -r[1]),
    )
    print("\nthe rule swept: those that confirm every real frame at its hand corners and that no other beats")
    print("(as many frames or more with as few false ones), fewest false first; and the rule in use")
    header = f"{'sides':>5} {'evidence':>8} {'weakest':>7} {'frames':>7} {'wrong':>6} {'no frame':>8}"
    print(f"{header} {'real wrong':>10}")
    for rule, t, w, f, _, rw in front:
        mark = "   <- in use" if FrameCheck(**rule) == DEFAULT_FRAME_CHECK else ""
        sides, evidence, weakest = rule["sides"], rule["evidence"], rule["weakest"]
        print(f"{sides:5d} {evidence:8.2f} {weakest:7.2f} {t:7.2f} {w:6.2f} {f:8.2f} {rw:10.2f}{mark}")
    return {"samples": len(samples), "rows": rows}


if __name__ == "__main__":
    main()
