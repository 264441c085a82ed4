"""Demo stage: remove the grid from the synthetic warped images and score it against the clean truth.

No LaMa weights exist in the demo (nothing is downloaded): the OpenCV Telea and Navier-Stokes
backends are selected explicitly and named in the summary; with ``LAMA_MODEL`` set, LaMa is
scored too. Keypoints are the grid model's predictions on every image (no annotated fallback); a
photo the grid model takes to have no grid is skipped, with its reason in the summary. The same
scores with the annotated keypoints are shown beside them (what a perfect grid model would give).
Scored on the test images (the grid model trained on train and val picked its checkpoint). A test
photo whose frame has no grid (the varied world's diagonal strings or none) has nothing to remove:
it is left out and counted, with how many of them the grid model rightly found no grid on.

With the real third-party photos at hand (``QUADRATSEG_SHARED_DATA``), each backend is also scored
on real reef texture: grid-shaped decoy masks beside the strings, filled and compared with the real
pixels (:mod:`grid_inpainting.real_eval`).
"""

from __future__ import annotations

import time
from typing import Any

from grid_inpainting.evaluate import evaluate_backends, load_pairs
from grid_inpainting.inpaint import DEMO_CHAIN_BACKEND, remove_grid, select_backend
from quadratseg.errors import QuadratsegError
from quadratseg.synth.dataset import export_image_path, load_truth, truth_grid

EVAL_SPLIT = "test"
REAL_FOLDERS = ("real_quadrats", "coralnet")
REAL_MAX_SIDE = 768


def real_photo_scores(ctx: Any, backends: list[Any]) -> dict[str, Any] | None:
    """Per backend, PSNR/SSIM inside decoy masks on the real photos (None without them)."""
    from grid_inpainting.real_eval import load_real_photos, score_real_photos

    root = getattr(ctx, "shared_data", None)
    folders = [root / name for name in REAL_FOLDERS if root is not None and (root / name).is_dir()]
    if not folders:
        return None
    photos = [photo for folder in folders for photo in load_real_photos(folder, REAL_MAX_SIDE)]
    scores, strips = score_real_photos(photos, backends, seed=ctx.seed)
    section = ctx.report.section("Grid removal on real photos (grid_inpainting)")
    section.paragraphs.append(
        f"{len(photos)} real quadrat photos ({', '.join(REAL_FOLDERS)}; {REAL_MAX_SIDE} px on the long "
        "side): the pixels under real strings are unknown, so grid-shaped decoy masks of the grid "
        "mask's width are drawn where no string runs, filled by each backend, and scored against the "
        "real reef texture that was there."
    )
    section.tables.append(
        (
            "Per backend on real photos (means over photos, inside the decoy masks)",
            ["backend", "PSNR in mask", "SSIM in mask", "s/image"],
            [[n, s["psnr_masked"], s["ssim_masked"], s["seconds_per_image"]] for n, s in scores.items()],
        )
    )
    for name, image in strips.items():
        ctx.report.add_image(section, f"real_inpaint_{name}", image, f"{name}: decoy | filled | photo", 1200)
    return {
        n: {k: v for k, v in s.items() if k != "photos"} | {"photos": len(s["photos"])}
        for n, s in scores.items()
    }


def short_fine_tune(ctx: Any, section: Any) -> dict[str, Any] | str:
    """With LaMa weights (LAMA_MODEL), a short self-supervised fine-tune on the grid-free training
    quadrats (grid_inpainting.train): validation masked L1 before and after. Without them, why not."""
    import json

    from grid_inpainting.train import TrainConfig, fine_tune

    if not ctx.settings.lama_model:
        return "skipped: no LaMa weights (LAMA_MODEL is unset; nothing is downloaded)"
    images = ctx.out_dir / "lama_train"
    images.mkdir(parents=True, exist_ok=True)
    for t in load_truth(ctx.synthetic_dir):
        if t["subset"] == "train":
            source = export_image_path(
                ctx.synthetic_dir / "cvat_exports" / "segmentation", "train", t["name"]
            )
            (images / source.name).write_bytes(source.read_bytes())
    cfg = TrainConfig(
        str(images),
        str(ctx.out_dir / "lama_finetune"),
        str(ctx.settings.lama_model),
        steps=30,
        batch=2,
        crop=256,
        val_every=10,
        seed=ctx.seed,
    )
    result = fine_tune(cfg)
    section.paragraphs.append(
        f"A 30-step fine-tune of LaMa on the grid-free training quadrats: validation masked L1 "
        f"{result['val_masked_l1_before']} before, {result['val_masked_l1_after']} after "
        f"({result['seconds']} s; {result['perceptual']})."
    )
    return json.loads(json.dumps(result))


def cleaned_for_training(
    pairs: list[tuple[str, Any, Any, Any]], truths: list[dict[str, Any]], backend: Any
) -> dict[str, Any]:
    """Photo name -> (H, W, 3) uint8 RGB: the train and val photos whose frame has a grid, cleaned
    by ``backend`` from their annotated grid keypoints (``pairs``: :func:`load_pairs`), as the
    grid-removal stage fills a programme's segmentation project. The synthetic export holds each
    quadrat rendered without its strings, which no photo of a gridded frame ever is: a model
    trained on those alone meets the inpainting's smooth bands for the first time in the chain."""
    subset = {t["name"]: t["subset"] for t in truths}
    kept = [pair for pair in pairs if subset.get(pair[0]) in ("train", "val")]
    cleaned = remove_grid([p[1] for p in kept], [p[3] for p in kept], backend)
    return {pair[0]: result.image for pair, result in zip(kept, cleaned, strict=True)}


def stage(ctx: Any) -> dict[str, Any]:
    """Score grid removal per backend on the synthetic warped images."""
    start = time.perf_counter()
    truths = load_truth(ctx.synthetic_dir)
    test = [t for t in truths if t["subset"] == EVAL_SPLIT]
    names = {t["name"] for t in test if truth_grid(t) is not None}  # the test photos whose frame has a grid
    gridless = sorted(t["name"] for t in test if truth_grid(t) is None)
    every_pair = load_pairs(ctx.synthetic_dir)
    annotated = [pair for pair in every_pair if pair[0] in names]
    ctx.shared["grid_removed_training"] = cleaned_for_training(
        every_pair, truths, select_backend(DEMO_CHAIN_BACKEND, ctx.settings)
    )
    predicted = ctx.shared.get("grid_keypoints")
    said_no_grid = ctx.shared.get("no_grid", {})
    no_grid = {n: r for n, r in said_no_grid.items() if n in names}  # grids the grid model missed
    without_truth = {
        "images": len(gridless),
        # the grid model's answer on them: "no grid" is right
        "found_no_grid": sum(n in said_no_grid for n in gridless) if predicted is not None else None,
    }
    if predicted is None:  # the stage runs alone (no grid model ran): the annotations, said so
        pairs = annotated
        source = "CVAT grid annotations (no grid model ran before this stage)"
    else:
        missing = sorted(n for n, *_ in annotated if n not in predicted)
        if missing:
            raise QuadratsegError(f"the grid model gave no keypoints for {missing[:5]}")
        pairs = [(n, g, t, predicted[n]) for n, g, t, _ in annotated if n not in no_grid]
        source = f"grid model predictions on all {len(pairs)} images with a grid"
    if not pairs:
        section = ctx.report.section("Grid removal (grid_inpainting)")
        section.paragraphs.append(
            f"Skipped: the grid model found no grid on any of the {len(annotated)} {EVAL_SPLIT} images "
            f"with a grid (for example: {next(iter(no_grid.values()), '')}); {len(gridless)} more have "
            "a frame without one."
        )
        return {
            "skipped": "no test image has a grid the grid model found",
            "keypoints": source,
            "split": EVAL_SPLIT,
            "images": 0,
            "images_without_grid": no_grid,
            "images_without_grid_truth": without_truth,
            "seconds": round(time.perf_counter() - start, 2),
        }
    names = ["opencv-telea", "opencv-ns"] + (["lama"] if ctx.settings.lama_model else [])
    backends = [select_backend(name, ctx.settings) for name in names]
    scores, strips = evaluate_backends(pairs, backends)
    best = max(scores, key=lambda name: scores[name]["psnr_masked"])
    # the cleaned test photos of the best backend, for the segmentation stages to run on
    cleaned = remove_grid([p[1] for p in pairs], [p[3] for p in pairs], backends[list(scores).index(best)])
    ctx.shared["grid_removed"] = {pair[0]: result.image for pair, result in zip(pairs, cleaned, strict=True)}
    reference = None
    if predicted is not None:  # the same with the annotated keypoints: what a perfect grid model gives
        with_grid = [pair for pair in annotated if pair[0] not in no_grid]
        reference, _ = evaluate_backends(with_grid, [b for b in backends if b.name == best])
    section = ctx.report.section("Grid removal (grid_inpainting)")
    section.paragraphs.append(
        f"Grid masks drawn from the 117 keypoints ({source}) of the {len(pairs)} warped {EVAL_SPLIT} images, "
        "then inpainted"
        + (
            f" ({len(gridless)} more {EVAL_SPLIT} photos have a frame without a grid and are left out; the "
            f"grid model found no grid on {without_truth['found_no_grid']} of them). "
            if gridless
            else ". "
        )
        + "Inside the mask, the untouched input scores "
        f"{scores[best]['psnr_masked_input']} dB PSNR against the "
        f"grid-free truth; {best} brings it to {scores[best]['psnr_masked']} dB. "
        + (
            ""
            if ctx.settings.lama_model
            else "No LaMa weights are present (LAMA_MODEL is unset), so the OpenCV "
            "backends were chosen explicitly; LaMa is scored when its weights are given."
        )
    )
    section.tables.append(
        (
            "Per backend (means over images)",
            ["backend", "PSNR in mask", "input PSNR in mask", "PSNR", "SSIM", "s/image"],
            [
                [n, s["psnr_masked"], s["psnr_masked_input"], s["psnr"], s["ssim"], s["seconds_per_image"]]
                for n, s in scores.items()
            ],
        )
    )
    if reference:
        section.paragraphs.append(
            f"With the annotated keypoints instead, {best} reaches "
            f"{reference[best]['psnr_masked']} dB in the mask."
        )
    for name, image in strips.items():
        ctx.report.add_image(
            section, f"inpaint_{name}", image, f"{name}: gridded input | cleaned | truth", 1200
        )
    real = real_photo_scores(ctx, backends)
    fine_tune = short_fine_tune(ctx, section)
    return {
        "real_photos": real if real is not None else "skipped: no real photos (QUADRATSEG_SHARED_DATA)",
        "fine_tune": fine_tune,
        "backend": best,
        "psnr_masked": scores[best]["psnr_masked"],
        "psnr_masked_input": scores[best]["psnr_masked_input"],
        "ssim": scores[best]["ssim"],
        "per_backend": scores,
        "keypoints": source,
        "split": EVAL_SPLIT,
        "images": len(pairs),
        "images_with_predicted_keypoints": len(pairs) if predicted is not None else 0,
        "images_without_grid": no_grid,
        "images_without_grid_truth": without_truth,
        "psnr_masked_with_annotated_keypoints": reference[best]["psnr_masked"] if reference else None,
        "seconds": round(time.perf_counter() - start, 2),
    }
