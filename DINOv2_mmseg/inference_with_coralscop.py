"""CLI: the upstream name of ``DINOv2_mmseg.predict`` (semantic segmentation refined with CoralSCoP/SAM).

python -m DINOv2_mmseg.inference_with_coralscop CONFIG CHECKPOINT IMAGES OUT_DIR --sam-weights FILE
"""

from DINOv2_mmseg.predict import predict

if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="DINOv2_mmseg.inference_with_coralscop")
