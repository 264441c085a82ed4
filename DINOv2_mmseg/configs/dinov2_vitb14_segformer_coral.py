# The accuracy-first model: DINOv2 ViT-B/14 + SegFormer head, 16 genera + background, upstream schedule
# (crop 518, batch 5, 150 epochs, validation every 20, lr 0.001).
# Set the backbone checkpoint to an official DINOv2 file and data_root to a prepared dataset:
#   python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral.py \
#       --data-root data/mmseg_finegrained \
#       --cfg-options model.backbone.checkpoint=weights/dinov2_vitb14_pretrain.pth
_base_ = [
    "_base_/models/dinov2_segformer.py",
    "_base_/datasets/coral_quadrats.py",
    "_base_/schedules/schedule_150e.py",
    "_base_/default_runtime.py",
]
model = dict(decode_head=dict(num_classes=17))
