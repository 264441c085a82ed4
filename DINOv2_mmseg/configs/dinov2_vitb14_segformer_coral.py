# The accuracy-first model: DINOv2 ViT-B/14 + SegFormer head, 16 genera + background, upstream schedule
# (crop 518, batch 5, 150 epochs, validation every 20, lr 0.001).
# The backbone starts from dinov2_vitb14_pretrain.pth in QUADRATSEG_MODELS_DIR (train stops without it
# unless --from-scratch; another file: --cfg-options model.backbone.checkpoint=FILE):
#   python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral.py \
#       --data-root data/mmseg_finegrained
_base_ = [
    "_base_/models/dinov2_segformer.py",
    "_base_/datasets/coral_quadrats.py",
    "_base_/schedules/schedule_150e.py",
    "_base_/default_runtime.py",
]
model = dict(decode_head=dict(num_classes=17))
