# Fine-tuning the whole DINOv2 ViT-B/14 + SegFormer (real data, from the official checkpoint).
# Differences from dinov2_vitb14_segformer_coral.py (upstream's schedule, fit for a frozen backbone):
# - the backbone learns 10 x slower than the head (lr_mult 0.1), and position embeddings, tokens and
#   every LayerNorm get no weight decay (MMSeg's paramwise_cfg; mmengine applies the longest key that
#   matches a parameter's name, so each backbone norm is named in full);
# - a MultiLevelNeck (as MMSeg's ViT configs) turns the four stride-14 maps into four scales
#   (x4, x2, x1, x0.5) for the SegFormer head, which fuses them.
#   python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral_finetune.py \
#       --data-root data/mmseg_finegrained   (backbone: dinov2_vitb14_pretrain.pth in QUADRATSEG_MODELS_DIR)
_base_ = ["dinov2_vitb14_segformer_coral.py"]
backbone_depth = 12
backbone_lr_mult = 0.1
model = dict(
    backbone=dict(freeze_vit=False),
    neck=dict(
        type="MultiLevelNeck", in_channels=[768, 768, 768, 768], out_channels=768, scales=[4, 2, 1, 0.5]
    ),
)
no_decay = dict(lr_mult=backbone_lr_mult, decay_mult=0.0)
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            "backbone": dict(lr_mult=backbone_lr_mult),
            "backbone.vit.pos_embed": no_decay,
            "backbone.vit.cls_token": no_decay,
            "backbone.vit.reg_token": no_decay,
            "backbone.vit.norm.": no_decay,
            **{f"backbone.vit.blocks.{i}.norm{k}.": no_decay for i in range(backbone_depth) for k in (1, 2)},
        }
    ),
)
