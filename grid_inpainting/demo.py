"""Demo stage: remove the grid from the synthetic warped images and score it against the clean truth.

No LaMa weights exist in the demo (nothing is downloaded): the OpenCV Telea and Navier-Stokes
backends are selected explicitly and named in the summary; with ``LAMA_MODEL`` set, LaMa is
scored too. Keypoints are the grid annotations of the CVAT export (the grid model's
predictions take their place once that stage runs in the demo).
"""

from __future__ import annotations

import time
from typing import Any

from grid_inpainting.evaluate import evaluate_backends, load_pairs
from grid_inpainting.inpaint import select_backend


def stage(ctx: Any) -> dict[str, Any]:
    """Score grid removal per backend on the synthetic warped images."""
    start = time.perf_counter()
    pairs = load_pairs(ctx.synthetic_dir)
    names = ["opencv-telea", "opencv-ns"] + (["lama"] if ctx.settings.lama_model else [])
    backends = [select_backend(name, ctx.settings) for name in names]
    scores, strips = evaluate_backends(pairs, backends)
    best = max(scores, key=lambda name: scores[name]["psnr_masked"])
    section = ctx.report.section("Grid removal (grid_inpainting)")
    section.paragraphs.append(
        f"Grid masks drawn from the 117 annotated keypoints of {len(pairs)} warped images, then inpainted. "
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
        "keypoints": "CVAT grid annotations (synthetic truth)",
        "seconds": round(time.perf_counter() - start, 2),
    }
