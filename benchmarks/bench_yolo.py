"""YOLO-seg: Nuclio handler vs a bare ``model.predict``; prepare_data vs FiftyOne's YOLOv5 exporter.

    .venv/bin/python benchmarks/bench_yolo.py [--weights best.pt] [--size 1920] [--images 40]

1. On one synthetic image of ``--size`` px, at each ``--imgsz``: time per image of the handler
   path (parse the request, decode base64, predict, box masks from ultralytics' masks, CVAT's
   detector answer with outlines, JSON) against a bare ``model.predict`` on the same array, in the
   same run, and against ``model.predict`` given the JPEG file (decoding included, like a request);
   the ratios are the cost of our wrapping. Peak memory of each path is measured in a
   forked process. Without ``--weights`` a yolo11n-seg is trained from scratch on the set first
   (``--epochs`` at 320 px, the demo's recipe), so that it finds colonies.
2. On a pulled synthetic dataset: our ``prepare_data`` against FiftyOne's ``YOLOv5Dataset``
   exporter of the same polylines.
"""

from __future__ import annotations

import argparse
import base64
import json

from _common import isolated_workdir, median_time, peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 1920])
    parser.add_argument("--conf", type=float, default=0.01)
    parser.add_argument(
        "--epochs", type=int, default=150, help="training of the model made without --weights"
    )
    args = parser.parse_args()
    work = isolated_workdir("bench-yolo-")
    import fiftyone as fo
    import numpy as np

    from coral_seg_yolo.predictor import SegPredictor
    from coral_seg_yolo.prepare_data import write_seg_layout
    from data_engineering.create_fiftyone_dataset import run_pull
    from quadratseg.images import read_image_rgb
    from quadratseg.instances import cvat_shapes
    from quadratseg.nuclio import dumps, parse_image_request
    from quadratseg.settings import Settings
    from quadratseg.synth import SynthConfig, generate_dataset

    synth = generate_dataset(work / "synth", SynthConfig(images=args.images, seed=0, size=512))
    run_pull(
        "bench",
        "xml",
        str(synth / "cvat_exports" / "segmentation"),
        dataset_name="bench",
        settings=Settings(media_dir=work / "media"),
    )
    ds = fo.load_dataset("bench")
    ours = median_time(lambda: write_seg_layout(ds, work / "ours", overwrite=True), 2)
    theirs = median_time(
        lambda: ds.export(
            export_dir=str(work / "fo"),
            dataset_type=fo.types.YOLOv5Dataset,
            label_field="gt_polylines",
            classes=None,
            overwrite=True,
        ),
        2,
    )
    print(
        f"prepare_data ({args.images} images): ours {ours:.2f} s, "
        f"FiftyOne YOLOv5Dataset export {theirs:.2f} s, ratio {ours / theirs:.2f}"
    )

    weights = args.weights
    if weights is None:
        from coral_seg_yolo.train import train

        result = json.loads(
            train(
                str(work / "ours" / "data.yaml"),
                project=str(work / "runs"),
                epochs=args.epochs,
                imgsz=320,
                batch=4,
                workers=0,
                from_scratch=True,
                args={"plots": False, "nbs": 4, "val": False},  # the optimizer steps every batch
            )
        )
        weights = result.get("last") or result["best"]
    big = generate_dataset(work / "big", SynthConfig(images=1, seed=1, size=args.size))
    image_path = next((big / "cvat_exports" / "segmentation" / "images").rglob("*.jpg"))
    body = json.dumps({"image": base64.b64encode(image_path.read_bytes()).decode(), "threshold": args.conf})
    rgb = read_image_rgb(image_path)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    for imgsz in args.imgsz:
        predictor = SegPredictor(weights, imgsz=imgsz, conf=args.conf)

        def handler_path(predictor=predictor) -> int:
            _, image, threshold = parse_image_request(body, 0.5)
            instances = predictor.predict(image, conf=threshold)
            return len(dumps(cvat_shapes(instances, (image.shape[1], image.shape[0]), threshold)))

        def bare(imgsz=imgsz, predictor=predictor) -> None:
            predictor.model.predict(bgr, imgsz=imgsz, conf=args.conf, verbose=False)

        def bare_file(imgsz=imgsz, predictor=predictor) -> None:  # ultralytics decodes the JPEG itself
            predictor.model.predict(str(image_path), imgsz=imgsz, conf=args.conf, verbose=False)

        handler_path()  # warm-up
        ours = median_time(handler_path)
        plain = median_time(bare)
        plain_file = median_time(bare_file)
        ours_mb, plain_mb = peak_rss_mb(handler_path), peak_rss_mb(bare)
        n = len(predictor.predict(rgb))
        print(
            f"handler on a {rgb.shape[1]} px image at imgsz {imgsz} ({n} instances): ours {ours:.2f} s, "
            f"bare model.predict on the array {plain:.2f} s (ratio {ours / plain:.2f}), "
            f"on the JPEG file {plain_file:.2f} s (ratio {ours / plain_file:.2f}); "
            f"peak memory ours {ours_mb:.0f} MiB, bare {plain_mb:.0f} MiB"
        )


if __name__ == "__main__":
    main()
