"""Grid removal per 1920 px image: mask drawing, and inpainting per backend.

    .venv/bin/python benchmarks/bench_inpaint.py [--size 1920] [--repeat 3] [--lama-model big-lama.pt]

Times (median of --repeat) on one synthetic warped image: drawing the grid mask from the 117
keypoints (ours) against OpenCV drawing the same segments with plain cv2.line calls, and
inpainting with OpenCV Telea / Navier-Stokes, plus LaMa when a TorchScript file is given (on
CUDA when available; without weights a tiny stand-in network of the same signature times only
our wrapping: pre-processing, padding, cropping). Ratios are against the plain library call.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from _common import isolated_workdir, median_time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lama-model", default=None)
    args = parser.parse_args()

    from grid_inpainting.inpaint import LamaBackend, OpenCVBackend
    from grid_inpainting.masks import default_line_width, grid_mask
    from quadratseg.keypoints import grid_neighbour_pairs
    from quadratseg.synth import SynthConfig, generate_dataset
    from quadratseg.synth.dataset import export_image_path, load_truth

    work = isolated_workdir("bench-inpaint-")
    synth = generate_dataset(work / "s", SynthConfig(images=1, seed=0, size=args.size))
    truth = load_truth(synth)[0]
    image = cv2.cvtColor(
        cv2.imread(str(export_image_path(synth / "cvat_exports" / "grid", truth["subset"], truth["name"]))),
        cv2.COLOR_BGR2RGB,
    )
    kp = np.asarray(truth["grid_warped_xy"])
    size = (image.shape[1], image.shape[0])
    width = default_line_width(size)

    def plain_lines() -> np.ndarray:
        mask = np.zeros(image.shape[:2], np.uint8)
        for a, b in grid_neighbour_pairs():
            cv2.line(
                mask, tuple(np.round(kp[a]).astype(int)), tuple(np.round(kp[b]).astype(int)), 1, round(width)
            )
        return mask

    ours_mask = median_time(lambda: grid_mask(kp, size, width), args.repeat)
    plain_mask = median_time(plain_lines, args.repeat)
    print(f"image {size[0]}x{size[1]}, line width {width:.1f} px")
    print(
        f"mask drawing: ours {ours_mask * 1000:.1f} ms, plain cv2.line loop {plain_mask * 1000:.1f} ms, "
        f"ratio {ours_mask / plain_mask:.2f}"
    )
    mask = grid_mask(kp, size, width)
    print(f"mask share of the image: {mask.mean():.3f}")
    for method, flag in (("telea", cv2.INPAINT_TELEA), ("ns", cv2.INPAINT_NS)):
        backend = OpenCVBackend(method)
        ours = median_time(lambda b=backend: b.inpaint_batch([image], [mask]), args.repeat)
        plain = median_time(lambda f=flag: cv2.inpaint(image, mask.astype(np.uint8), 5.0, f), args.repeat)
        print(
            f"opencv-{method}: ours {ours:.2f} s/image, plain cv2.inpaint {plain:.2f} s, "
            f"ratio {ours / plain:.2f}"
        )
    import torch

    lama_path = args.lama_model
    label = "lama"
    if lama_path is None:

        class StandIn(torch.nn.Module):
            def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return image * (1 - mask.to(image.dtype))

        lama_path = str(work / "stand-in.pt")
        torch.jit.script(StandIn()).save(lama_path)
        label = "lama wrapping only (stand-in network, no weights given)"
    backend = LamaBackend(lama_path)
    backend.inpaint_batch([image], [mask])  # warm-up
    ours = median_time(lambda: backend.inpaint_batch([image], [mask]), args.repeat)

    def plain_call() -> None:
        from simple_lama_inpainting.utils import prepare_img_and_mask

        img, m = prepare_img_and_mask(image, mask.astype(np.uint8) * 255, backend.lama.device)
        with torch.inference_mode():
            backend.lama.model(img, m)

    plain = median_time(plain_call, args.repeat)
    print(
        f"{label} on {backend.device}: ours {ours:.3f} s/image, bare model call {plain:.3f} s, "
        f"ratio {ours / plain:.2f}"
    )


if __name__ == "__main__":
    main()
