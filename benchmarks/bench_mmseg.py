"""DINOv2 + SegFormer: our semantic inference vs MMSeg's bare ``inference_model``; SAM refinement vs bare SAM.

    .venv/bin/python benchmarks/bench_mmseg.py [--config dinov2_tiny_segformer_cpu.py] [--size 1920]
        [--img-scale 1036] [--sam tiny|vit_b] [--device cpu]

On one synthetic quadrat of ``--size`` px, with random weights (nothing is downloaded):
1. semantic inference: ``SemanticSegmenter.predict_probs`` (softmax probabilities as numpy) against
   ``mmseg.apis.inference_model`` on the same model and array, in the same run; the ratio is our cost;
2. refinement: ``refine_instances`` (seeds, SAM prompts, mask choice, overlaps, outlines) against the bare
   segment-anything calls it makes (``set_image`` and one ``predict`` per seed with the same prompts),
   on probabilities made from the image's true colonies, so the seeds are the real colonies.
``--config dinov2_vitb14_segformer_coral.py --img-scale 1036 --sam vit_b`` times the real sizes
(about a minute per image on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json

from _common import isolated_workdir, median_time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="dinov2_tiny_segformer_cpu.py")
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--img-scale", type=int, default=448)
    parser.add_argument("--sam", choices=("tiny", "vit_b"), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = isolated_workdir("bench-mmseg-")
    import cv2
    import numpy as np
    import torch

    from DINOv2_mmseg.compat import import_mmseg

    import_mmseg()  # the mmcv.ops stand-in goes in before mmseg is imported
    from mmengine.registry import init_default_scope
    from mmseg.apis import inference_model
    from mmseg.registry import MODELS
    from segment_anything import SamPredictor

    from DINOv2_mmseg.predictor import SemanticSegmenter
    from DINOv2_mmseg.prepare_data import class_index_mask, class_table
    from DINOv2_mmseg.runner import load_config
    from DINOv2_mmseg.sam_refine import (
        RefineConfig,
        build_sam_model,
        interior_point,
        refine_instances,
        semantic_seeds,
    )
    from quadratseg.synth import SynthConfig, generate_dataset, load_truth
    from quadratseg.synth.dataset import export_image_path

    synth = generate_dataset(work / "synth", SynthConfig(images=1, seed=0, size=args.size))
    truth = load_truth(synth)[0]
    bgr = cv2.imread(
        str(export_image_path(synth / "cvat_exports" / "segmentation", truth["subset"], truth["name"]))
    )
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    scale = (args.img_scale, args.img_scale)
    cfg = load_config(
        args.config,
        {"val_dataloader.dataset.pipeline.1.scale": scale, "test_dataloader.dataset.pipeline.1.scale": scale},
    )
    init_default_scope("mmseg")
    cfg.model.train_cfg = None
    model = MODELS.build(cfg.model)
    classes = list(cfg.classes)
    ckpt = work / "random.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"dataset_meta": {"classes": classes}}}, ckpt)
    segmenter = SemanticSegmenter(cfg, ckpt, args.device)
    bare_model = segmenter.model  # the same module: only the call differs
    ours_s = median_time(lambda: segmenter.predict_probs(rgb), args.repeat)
    bare_s = median_time(lambda: inference_model(bare_model, bgr), args.repeat)

    # refinement on probabilities from the true colonies (class index from the main-family table)
    names, _ = class_table("main_family")
    from quadratseg.taxonomy import load_taxonomy

    families = load_taxonomy().map_labels([c["label"] for c in truth["corals"]], "main_family")
    size = (rgb.shape[1], rgb.shape[0])
    scale_xy = np.array(size) / np.array(truth["warped_size"])
    labelled = [
        (names.index(f), [np.asarray(c["polygon_xy"]) * scale_xy])
        for f, c in zip(families, truth["corals"], strict=True)
    ]
    index = class_index_mask(labelled, size)
    probs = np.full((len(names), *index.shape), 0.02, np.float32)
    np.put_along_axis(probs, index[None].astype(np.int64), 0.9, axis=0)
    if args.sam == "vit_b":
        shape = {
            "embed_dim": 768,
            "depth": 12,
            "num_heads": 12,
            "global_attn_indexes": [2, 5, 8, 11],
            "img_size": 1024,
        }
    else:
        shape = {"embed_dim": 64, "depth": 2, "num_heads": 2, "global_attn_indexes": [1], "img_size": 1024}
    sam = build_sam_model(shape).to(segmenter.device).eval()
    refine = RefineConfig()  # the defaults; with random SAM weights most seeds keep their own mask
    predictor = SamPredictor(sam)
    seeds = semantic_seeds(probs, refine.min_threshold, refine.min_area)

    def bare_sam() -> None:
        predictor.set_image(rgb)
        for _, seed in seeds:
            x0, y0, x1, y1 = seed.xyxy
            px, py = interior_point(seed.box_mask)
            predictor.predict(
                point_coords=np.array([[x0 + px, y0 + py]], np.float32),
                point_labels=np.array([1]),
                box=np.array([x0, y0, x1, y1], np.float32),
                multimask_output=True,
            )

    ours_r = median_time(lambda: refine_instances(rgb, probs, names, predictor, refine), args.repeat)
    found = refine_instances(rgb, probs, names, predictor, refine)
    bare_r = median_time(bare_sam, args.repeat)
    print(
        json.dumps(
            {
                "image_px": list(size),
                "config": args.config,
                "img_scale": args.img_scale,
                "device": segmenter.device,
                "threads": torch.get_num_threads(),
                "semantic_ours_s": round(ours_s, 3),
                "semantic_bare_inference_model_s": round(bare_s, 3),
                "semantic_ratio": round(ours_s / bare_s, 3),
                "sam": args.sam,
                "seeds": len(seeds),
                "instances_from_sam": sum(1 for i in found if i.extra["source"] == "sam"),
                "instances_from_seeds": sum(1 for i in found if i.extra["source"] == "semantic"),
                "refine_ours_s": round(ours_r, 3),
                "refine_bare_sam_s": round(bare_r, 3),
                "refine_ratio": round(ours_r / bare_r, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
