# Runtime shared by every config: mmseg scope, our registry plugins, logging, checkpoints.
default_scope = "mmseg"
custom_imports = dict(imports=["DINOv2_mmseg.plugins"], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),  # train --launcher sets gloo on CPU
)
# scalars.json and TensorBoard events in <work_dir>/<timestamp>/vis_data (`tensorboard --logdir <work_dir>`);
# train --no-tensorboard drops TensorBoard, --mlflow URI adds MLflowVisBackend; test keeps Local only
vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
# no fixed name: each Runner gets its own visualizer (mmengine keeps named instances process-wide)
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
# test --tta: tta_pipeline (datasets/) feeds this wrapper, which averages the augmented predictions
tta_model = dict(type="SegTTAModel")
