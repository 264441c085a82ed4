"""coral_seg_yolo: ultralytics YOLO11 instance segmentation of coral genera.

Stages run as ``python -m coral_seg_yolo.<stage>``; see coral_seg_yolo/README.md.
"""
