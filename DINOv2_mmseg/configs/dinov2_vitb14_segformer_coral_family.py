# Hierarchical training, stage 1: DINOv2 ViT-B/14 + SegFormer on the 7 main families + background
# (`prepare_data --level main_family`), from the official backbone (QUADRATSEG_MODELS_DIR).
#   python -m DINOv2_mmseg.train dinov2_vitb14_segformer_coral_family.py --data-root data/mmseg_main_family
# Its work dir (default QUADRATSEG_OUTPUTS_DIR/work_dirs/dinov2_vitb14_segformer_coral_family) is where
# stage 2, dinov2_vitb14_segformer_coral_genus_from_family.py, starts from.
_base_ = ["dinov2_vitb14_segformer_coral.py"]
data_root = "data/mmseg_main_family"
classes = (
    "background",
    "Acroporidae",
    "Agariciidae",
    "Merulinidae",
    "Milleporidae",
    "Other",
    "Pocilloporidae",
    "Poritidae",
)
model = dict(decode_head=dict(num_classes=8))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
test_dataloader = dict(dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
