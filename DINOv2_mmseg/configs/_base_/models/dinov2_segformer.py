# DINOv2 ViT-B/14 backbone + SegFormer all-MLP head. The backbone's four maps (blocks 3, 6, 9, 12)
# all have stride 14; the head fuses them and predicts at that stride, upsampled to the input.
norm_cfg = dict(type="BN", requires_grad=True)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],  # ImageNet statistics, as DINOv2 was trained with
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,  # padding is ignored by the loss and the metric
    size=(518, 518),
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type="DINOv2",
        arch="vit_b",
        out_indices=(2, 5, 8, 11),
        freeze_vit=False,
        checkpoint=None,  # None: train takes dinov2_vitb14_pretrain.pth from QUADRATSEG_MODELS_DIR
    ),
    decode_head=dict(
        type="SegformerHead",
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.1,
        num_classes=17,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    ),
    train_cfg=dict(),
    # sliding 518 px windows over the resized image; 1036 px quadrats take 3 x 3 windows
    test_cfg=dict(mode="slide", crop_size=(518, 518), stride=(345, 345)),
)
