"""Synthetic photo-quadrats with the ground truth of every pipeline stage.

Run ``python -m quadratseg.synth OUT_DIR --images 20 --seed 0 --size 1024``; see
:mod:`quadratseg.synth.dataset` for the layout it writes.
"""

from quadratseg.synth.dataset import SynthConfig, generate_dataset, load_truth

__all__ = ["SynthConfig", "generate_dataset", "load_truth"]
