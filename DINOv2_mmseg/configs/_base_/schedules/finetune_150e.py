# Fine-tuning a pretrained DINOv2 backbone (the recipe of every ViT-B config): upstream's 150 epochs and
# poly decay (schedule_150e.py), with AdamW at lr 1e-4 and weight decay 0.05 for the head;
# - the backbone learns 10 x slower than the head (lr_mult 0.1): the pretrained features are adapted,
#   not overwritten (upstream's lr 1e-3 on every ViT parameter was a frozen-backbone schedule);
# - position embeddings, tokens and every LayerNorm get no weight decay (MMSeg's paramwise_cfg;
#   mmengine applies the longest key that matches a parameter's name, so each backbone norm is named in
#   full, for the backbone_depth blocks of ViT-B).
# A frozen backbone (head only, upstream's lr 1e-3): dinov2_vitb14_segformer_coral_frozen.py.
_base_ = ["schedule_150e.py"]
backbone_depth = 12
backbone_lr_mult = 0.1
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
