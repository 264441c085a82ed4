# Coral quadrats prepared by `python -m DINOv2_mmseg.prepare_data` (layout: DINOv2_mmseg/plugins/dataset.py).
# Classes are read from data_root/classes.txt; `classes` below must match it (checked at start-up).
dataset_type = "CoralSegDataset"
data_root = "data/mmseg_finegrained"
classes = (
    "background",
    "Acanthastrea",
    "Acropora",
    "Astreopora",
    "Atrea",
    "Fungia",
    "Goniastrea",
    "Leptastrea",
    "Merulinidae",
    "Millepora",
    "Montastrea",
    "Montipora",
    "Other",
    "Pavona/Leptoseris",
    "Pocillopora",
    "Porites",
    "Psammocora",
)
crop_size = (518, 518)
img_scale = (1036, 1036)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    # multi-scale training: 0.5x to 2x of img_scale, then a random crop
    dict(type="RandomResize", scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5, direction="horizontal"),
    dict(type="RandomFlip", prob=0.5, direction="vertical"),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=img_scale, keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="PackSegInputs"),
]
# test --tta: three scales around img_scale (0.75x, 1x, 1.25x; 777, 1036, 1295 px for a 1920 px
# quadrat), each also flipped; SegTTAModel averages the six predictions (each made as model.test_cfg says)
tta_scales = (0.75, 1.0, 1.25)
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="TestTimeAug",
        transforms=[
            [
                dict(type="Resize", scale=(round(img_scale[0] * r), round(img_scale[1] * r)), keep_ratio=True)
                for r in tta_scales
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
train_dataloader = dict(
    batch_size=5,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        data_prefix=dict(img_path="train/data", seg_map_path="train/labels"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        data_prefix=dict(img_path="val/data", seg_map_path="val/labels"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=dict(classes=classes),
        data_prefix=dict(img_path="test/data", seg_map_path="test/labels"),
        pipeline=test_pipeline,
    ),
)
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
