# Runtime shared by every config: mmseg scope, our registry plugins, logging, checkpoints.
default_scope = "mmseg"
custom_imports = dict(imports=["DINOv2_mmseg.plugins"], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
# no fixed name: each Runner gets its own visualizer (mmengine keeps named instances process-wide)
visualizer = dict(type="SegLocalVisualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
tta_model = dict(type="SegTTAModel")
