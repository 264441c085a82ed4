"""Synthetic photo-quadrats with the ground truth of every pipeline stage.

Run ``python -m quadratseg.synth OUT_DIR --images 20 --seed 0 --size 1024 [--world varied]``; see
:mod:`quadratseg.synth.dataset` for the layout it writes, :mod:`quadratseg.synth.varied` for the
varied world (frames, reef, water, camera and occluders drawn per photo) and docs/synthetic.md.
"""

from quadratseg.synth.dataset import SynthConfig, generate_dataset, load_truth

__all__ = ["SynthConfig", "generate_dataset", "load_truth"]
