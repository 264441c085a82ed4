"""grid_pose_detection: YOLO11-pose for the 4 quadrat corners and the 117 grid intersections.

Stages run as ``python -m grid_pose_detection.<stage>``; see grid_pose_detection/README.md.
"""
