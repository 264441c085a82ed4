"""Demo stage: remove the grid from the synthetic warped images and score it against the clean truth.

No LaMa weights exist in the demo (nothing is downloaded): the OpenCV Telea and Navier-Stokes
backends are selected explicitly and named in the summary; with ``LAMA_MODEL`` set, LaMa is
scored too. Keypoints are the grid model's predictions where it found >= 90 % of the grid, the
grid annotations of the CVAT export elsewhere. Scored on the test images (the grid model trained
on train and val picked its checkpoint).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from grid_inpainting.evaluate import evaluate_backends, load_pairs
from grid_inpainting.inpaint import select_backend
from quadratseg.synth.dataset import load_truth

EVAL_SPLIT = "test"


def stage(ctx: Any) -> dict[str, Any]:
    """Score grid removal per backend on the synthetic warped images."""
    start = time.perf_counter()
    names = {t["name"] for t in load_truth(ctx.synthetic_dir) if t["subset"] == EVAL_SPLIT}
    annotated = [pair for pair in load_pairs(ctx.synthetic_dir) if pair[0] in names]
    predicted = ctx.shared.get("grid_keypoints", {})
    # a grid model's keypoints are used for an image when it matched >= 90 % of the 117 points;
    # otherwise that image uses its annotated keypoints, and the summary says how many did
    usable = {
        n: kp for n, kp in predicted.items() if n in names and np.isfinite(kp).all(axis=1).mean() >= 0.9
    }
    pairs = [(n, g, t, usable.get(n, kp)) for n, g, t, kp in annotated]
    source = (
        f"grid model predictions on {len(usable)} of {len(annotated)} images, "
        "CVAT grid annotations on the rest"
        if predicted
        else "CVAT grid annotations (synthetic truth)"
    )
    names = ["opencv-telea", "opencv-ns"] + (["lama"] if ctx.settings.lama_model else [])
    backends = [select_backend(name, ctx.settings) for name in names]
    scores, strips = evaluate_backends(pairs, backends)
    best = max(scores, key=lambda name: scores[name]["psnr_masked"])
    reference = None
    if usable:  # the same with the annotated keypoints: what a perfect grid model would give
        reference, _ = evaluate_backends(annotated, [b for b in backends if b.name == best])
    section = ctx.report.section("Grid removal (grid_inpainting)")
    section.paragraphs.append(
        f"Grid masks drawn from the 117 keypoints ({source}) of the {len(pairs)} warped {EVAL_SPLIT} images, "
        "then inpainted. "
        "Inside the mask, the untouched input scores "
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
    return {
        "backend": best,
        "psnr_masked": scores[best]["psnr_masked"],
        "psnr_masked_input": scores[best]["psnr_masked_input"],
        "ssim": scores[best]["ssim"],
        "per_backend": scores,
        "keypoints": source,
        "split": EVAL_SPLIT,
        "images": len(pairs),
        "images_with_predicted_keypoints": len(usable),
        "psnr_masked_with_annotated_keypoints": reference[best]["psnr_masked"] if reference else None,
        "seconds": round(time.perf_counter() - start, 2),
    }
