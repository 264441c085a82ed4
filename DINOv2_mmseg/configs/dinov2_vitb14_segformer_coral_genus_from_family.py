# Hierarchical training, stage 2: the 16 genera + background (`prepare_data --level finegrained`),
# starting from stage 1's model (dinov2_vitb14_segformer_coral_family.py): load_from takes the whole
# model; mmengine skips the tensors whose shapes differ (the head's last layer, 8 -> 17 classes, is
# logged as a size mismatch and keeps its fresh initialisation), so backbone and fused head layers
# start from the families.
#   python -m DINOv2_mmseg.train dinov2_vitb14_segformer_coral_genus_from_family.py \
#       --data-root data/mmseg_finegrained
# load_from may name a checkpoint file or a work dir (its best checkpoint), relative to the current
# folder or to QUADRATSEG_OUTPUTS_DIR; another run: --cfg-options load_from=PATH.
_base_ = ["dinov2_vitb14_segformer_coral.py"]
load_from = "work_dirs/dinov2_vitb14_segformer_coral_family"
