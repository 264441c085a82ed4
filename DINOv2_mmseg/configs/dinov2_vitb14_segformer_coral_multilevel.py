# DINOv2 ViT-B/14 + SegFormer with a multi-level neck (real data, from the official checkpoint):
# dinov2_vitb14_segformer_coral.py (its fine-tuning recipe: backbone lr x 0.1, no decay on embeddings,
# tokens and norms) plus a MultiLevelNeck, as MMSeg's ViT configs, turning the four stride-14 maps into
# four scales (x4, x2, x1, x0.5) for the SegFormer head, which fuses them.
#   python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral_multilevel.py \
#       --data-root data/mmseg_finegrained   (backbone: dinov2_vitb14_pretrain.pth in QUADRATSEG_MODELS_DIR)
_base_ = ["dinov2_vitb14_segformer_coral.py"]
model = dict(
    neck=dict(
        type="MultiLevelNeck", in_channels=[768, 768, 768, 768], out_channels=768, scales=[4, 2, 1, 0.5]
    ),
)
