# Testing 1920 px quadrats at full resolution: no downscaling to 1036 px, 518 px windows slid with a
# 351 px stride (5 x 5 windows over 1920 px, 167 px overlap), the windows' logits averaged where they
# overlap. Training is unchanged (multi-scale 518-2072 px around 1036, so 1920 px is inside the range
# the model saw).
#   python -m DINOv2_mmseg.testloop dinov2_vitb14_segformer_coral_slide1920.py CHECKPOINT [--tta]
_base_ = ["dinov2_vitb14_segformer_coral.py"]
test_scale = (1920, 1920)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=test_scale, keep_ratio=True),
    dict(type="LoadAnnotations", reduce_zero_label=False),
    dict(type="PackSegInputs"),
]
model = dict(test_cfg=dict(mode="slide", crop_size=(518, 518), stride=(351, 351)))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# --tta around the full resolution (0.75, 1 and 1.25 x 1920 px, each also flipped), not around 1036 px
tta_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="TestTimeAug",
        transforms=[
            [dict(type="Resize", scale=(s, s), keep_ratio=True) for s in (1440, 1920, 2400)],
            [
                dict(type="RandomFlip", prob=0.0, direction="horizontal"),
                dict(type="RandomFlip", prob=1.0, direction="horizontal"),
            ],
            [dict(type="LoadAnnotations", reduce_zero_label=False)],
            [dict(type="PackSegInputs")],
        ],
    ),
]
