# The accuracy-first model: DINOv2 ViT-B/14 + SegFormer head, 16 genera + background, upstream's data
# schedule (crop 518, batch 5, 150 epochs, validation every 20) with the fine-tuning recipe of a
# pretrained backbone (_base_/schedules/finetune_150e.py: head AdamW lr 1e-4, wd 0.05; backbone lr x 0.1;
# no decay on position embeddings, tokens and norms). The family, genus and 1920 px configs inherit it;
# dinov2_vitb14_segformer_coral_frozen.py is the frozen-backbone baseline.
# The backbone starts from dinov2_vitb14_pretrain.pth in QUADRATSEG_MODELS_DIR (train stops without it
# unless --from-scratch; another file: --cfg-options model.backbone.checkpoint=FILE):
#   python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral.py \
#       --data-root data/mmseg_finegrained
_base_ = [
    "_base_/models/dinov2_segformer.py",
    "_base_/datasets/coral_quadrats.py",
    "_base_/schedules/finetune_150e.py",
    "_base_/default_runtime.py",
]
model = dict(decode_head=dict(num_classes=17))
