"""DINOv2_mmseg: DINOv2 + SegFormer head in MMSegmentation, refined into colonies with SAM/CoralSCoP.

Stages run as ``python -m DINOv2_mmseg.<stage>``; see DINOv2_mmseg/README.md.
"""
