# The frozen-backbone baseline: the official DINOv2 ViT-B/14 stays as it is (no gradient, eval mode) and
# only the SegFormer head trains, with upstream's schedule (AdamW lr 1e-3, weight decay 0.01, 150 epochs).
# Cheaper per step and a reference for what fine-tuning (dinov2_vitb14_segformer_coral.py) adds.
#   python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral_frozen.py \
#       --data-root data/mmseg_finegrained   (backbone: dinov2_vitb14_pretrain.pth in QUADRATSEG_MODELS_DIR)
_base_ = ["dinov2_vitb14_segformer_coral.py"]
model = dict(backbone=dict(freeze_vit=True))
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.001, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=None,
)
