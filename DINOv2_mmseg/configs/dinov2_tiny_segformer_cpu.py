# A tiny DINOv2-shaped ViT (48-dim, 4 blocks) + SegFormer head for CPU tests and the demo:
# the same code path as the ViT-B/14 config, sized to train in minutes on 2 cores.
# Classes: the 7 main families + background (prepare_data --level main_family), from the family config.
_base_ = ["dinov2_vitb14_segformer_coral_family.py"]  # its data root, classes and 8-class head
crop_size = (112, 112)
img_scale = (224, 224)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="RandomResize", scale=img_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.9),
    dict(type="RandomFlip", prob=0.5, direction="horizontal"),
    dict(type="RandomFlip", prob=0.5, direction="vertical"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=img_scale, keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="PackSegInputs"),
]
tta_pipeline = [  # as _base_/datasets/coral_quadrats.py, around this config's img_scale
    dict(type="LoadImageFromFile"),
    dict(
        type="TestTimeAug",
        transforms=[
            [
                dict(type="Resize", scale=(round(img_scale[0] * r), round(img_scale[1] * r)), keep_ratio=True)
                for r in (0.75, 1.0, 1.25)
            ],
            [
                dict(type="RandomFlip", prob=0.0, direction="horizontal"),
                dict(type="RandomFlip", prob=1.0, direction="horizontal"),
            ],
            [dict(type="LoadAnnotations", reduce_zero_label=False)],
            [dict(type="PackSegInputs")],
        ],
    ),
]
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch="tiny", out_indices=(0, 1, 2, 3), img_size=112),
    decode_head=dict(in_channels=[48, 48, 48, 48], channels=64),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(84, 84)),
)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=train_pipeline),
)
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=test_pipeline),
)
test_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(pipeline=test_pipeline),
)
# trained from scratch (the tiny arch has no pretrained weights): one plain AdamW for every parameter,
# not the ViT-B family's fine-tuning multipliers
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.002, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=None,
)
param_scheduler = [dict(type="PolyLR", eta_min=0.0, power=1.0, begin=0, end=40, by_epoch=True)]
train_cfg = dict(max_epochs=40, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10), logger=dict(interval=5))
