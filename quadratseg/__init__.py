"""QUADRATSEG core: geometry, formats, taxonomy, keypoint templates, warping, settings.

The core imports no heavy framework at module level (torch, ultralytics, mmseg and FiftyOne
are imported where they are used), so ``import quadratseg`` is cheap and safe anywhere.
"""

__version__ = "0.1.0"
