"""CLI: test a checkpoint with mmengine's Runner and MMSeg's IoUMetric, like MMSeg's ``tools/test.py``.

    python -m DINOv2_mmseg.testloop CONFIG CHECKPOINT [--show-dir DIR] [--data-root DIR] [--work-dir DIR] \
        [--tta] [--trust-checkpoint]

``--show-dir`` saves each test image with its predicted (and true) classes painted, by MMSeg's
``SegVisualizationHook``. ``--tta`` tests with the config's ``tta_pipeline`` (several scales, flips)
through MMSeg's ``SegTTAModel``, which averages the predictions, as ``tools/test.py --tta`` does.
Testing writes local logs only (no TensorBoard / MLflow run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError


def resize_scales(pipeline: Any) -> list[tuple[int, int]]:
    """The ``Resize`` scales of an MMSeg pipeline, inside ``TestTimeAug`` too (in pipeline order).

    Examples:
        >>> resize_scales([{"type": "Resize", "scale": (1920, 1920)}, {"type": "PackSegInputs"}])
        [(1920, 1920)]
    """
    scales = []
    for step in pipeline or []:
        if step.get("type") == "Resize" and step.get("scale") is not None:
            scales.append(tuple(step["scale"]))
        for group in step.get("transforms", []) if step.get("type") == "TestTimeAug" else []:
            scales += resize_scales(group)
    return scales


def use_tta(cfg: Any) -> None:
    """Test-time augmentation as MMSeg's ``tools/test.py --tta``: the config's ``tta_pipeline`` feeds
    ``tta_model`` (``SegTTAModel``) wrapping the model."""
    if not cfg.get("tta_pipeline") or not cfg.get("tta_model"):
        raise QuadratsegError(
            "--tta needs tta_pipeline and tta_model in the config "
            "(as configs/_base_/datasets/coral_quadrats.py defines them)"
        )
    test_scales, tta_scales = (
        resize_scales(cfg.test_dataloader.dataset.pipeline),
        resize_scales(cfg.tta_pipeline),
    )
    if test_scales and tta_scales and not set(test_scales) & set(tta_scales):
        raise QuadratsegError(
            f"--tta: the config's tta_pipeline resizes to {tta_scales} but its test pipeline to "
            f"{test_scales}; give the config a tta_pipeline around its test scale (as slide1920 does)"
        )
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def run_test(
    cfg: Any,
    checkpoint: str,
    work_dir: str | Path,
    show_dir: str | None = None,
    tta: bool = False,
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    """Run the config's test loop on ``checkpoint`` (with test-time augmentation when ``tta``); return
    MMSeg's metrics. ``trust_checkpoint``: see :func:`DINOv2_mmseg.compat.load_checkpoint_file`."""
    from mmengine.runner import Runner

    from DINOv2_mmseg.compat import project_checkpoint_loader
    from DINOv2_mmseg.runner import check_config, name_run

    if not Path(checkpoint).is_file():
        raise QuadratsegError(f"checkpoint {checkpoint} does not exist")
    check_config(cfg, ("test_dataloader",))
    cfg.work_dir = str(work_dir)
    cfg.load_from = str(checkpoint)
    cfg.train_dataloader = None
    cfg.train_cfg = None
    cfg.optim_wrapper = None
    cfg.param_scheduler = None
    cfg.visualizer.vis_backends = [{"type": "LocalVisBackend"}]
    if tta:
        use_tta(cfg)
    if show_dir:
        hook = cfg.default_hooks.visualization
        hook.draw = True
        hook.interval = 1
        cfg.visualizer.save_dir = str(Path(show_dir).resolve())
    name_run(cfg)  # a logger of its own, whatever ran in this process the same second
    runner = Runner.from_cfg(cfg)
    with project_checkpoint_loader(trust_checkpoint):
        return {k: float(v) for k, v in runner.test().items()}


def test(
    config: str,
    checkpoint: str,
    show_dir: str | None = None,
    data_root: str | None = None,
    work_dir: str | None = None,
    cfg_options: Any = None,
    tta: bool = False,
    trust_checkpoint: bool = False,
) -> str:
    """Test a segmentor checkpoint on the config's test split (mIoU, mAcc, aAcc from MMSeg's IoUMetric).

    Args:
        config: the MMSeg config the checkpoint was trained with.
        checkpoint: checkpoint file.
        show_dir: save painted predictions there.
        data_root: prepared dataset (default: the config's data_root).
        work_dir: logs (default: QUADRATSEG_OUTPUTS_DIR/work_dirs/<config name>/test).
        cfg_options: config overrides (JSON object or key=value items).
        tta: test-time augmentation: the config's tta_pipeline (scales, flips) averaged by SegTTAModel.
        trust_checkpoint: load a checkpoint that holds Python objects beyond tensors and mmengine's own
            types with full unpickling (it can run code: trusted files only).

    Returns:
        JSON with the metrics.
    """
    from quadratseg.cli import current_settings, output_path, pin_device, weights_path

    settings = current_settings()
    pin_device(settings.device)  # before torch starts CUDA: mmengine uses the visible GPU

    from DINOv2_mmseg.runner import load_config

    cfg = load_config(config, cfg_options, data_root)
    work = output_path(work_dir, Path("work_dirs") / Path(config).stem / "test", settings)
    result = run_test(cfg, weights_path(checkpoint, settings), work, show_dir, tta, bool(trust_checkpoint))
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(test, name="DINOv2_mmseg.testloop")
