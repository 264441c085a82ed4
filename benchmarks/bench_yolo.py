"""YOLO-seg: Nuclio handler vs a bare ``model.predict``; prepare_data vs FiftyOne's YOLOv5 exporter.

    .venv/bin/python benchmarks/bench_yolo.py [--weights best.pt] [--size 1920] [--images 40]

1. On one synthetic image of ``--size`` px: time per image of the handler path (decode base64,
   predict, polygons, CVAT masks as RLE, JSON) against a bare ``model.predict`` on the same array,
   in the same run; the ratio is the cost of our wrapping. Without ``--weights`` a freshly built
   yolo11n-seg (random weights, few detections) is trained for one epoch on the set first.
2. On a pulled synthetic dataset: our ``prepare_data`` against FiftyOne's ``YOLOv5Dataset``
   exporter of the same polylines.
"""

from __future__ import annotations

import argparse
import base64
import json

from _common import isolated_workdir, median_time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args()
    work = isolated_workdir("bench-yolo-")
    import cv2
    import fiftyone as fo
    import numpy as np

    from coral_seg_yolo.predictor import SegPredictor
    from coral_seg_yolo.prepare_data import write_seg_layout
    from data_engineering.create_fiftyone_dataset import run_pull
    from quadratseg.instances import cvat_shapes
    from quadratseg.nuclio import decode_image_b64
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
                epochs=1,
                imgsz=128,
                batch=4,
                workers=0,
                args={"plots": False},
            )
        )
        weights = result["best"]
    big = generate_dataset(work / "big", SynthConfig(images=1, seed=1, size=args.size))
    image_path = next((big / "cvat_exports" / "segmentation" / "images").rglob("*.jpg"))
    payload = base64.b64encode(image_path.read_bytes()).decode()
    predictor = SegPredictor(weights, imgsz=args.imgsz, conf=0.01)
    rgb = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
    bgr = np.ascontiguousarray(rgb[..., ::-1])

    def handler_path() -> int:
        image = decode_image_b64(payload)
        shapes = cvat_shapes(predictor.predict(image), (image.shape[1], image.shape[0]), 0.01)
        return len(json.dumps(shapes))

    def bare() -> None:
        predictor.model.predict(bgr, imgsz=args.imgsz, conf=0.01, verbose=False)

    handler_path()  # warm-up
    ours = median_time(handler_path)
    plain = median_time(bare)
    n = len(predictor.predict(rgb))
    print(
        f"handler on a {rgb.shape[1]} px image ({n} instances): ours {ours:.2f} s, "
        f"bare model.predict {plain:.2f} s, ratio {ours / plain:.2f}"
    )


if __name__ == "__main__":
    main()
