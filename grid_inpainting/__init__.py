"""grid_inpainting: grid mask from the 117 keypoints, LaMa (SimpleLama) inpainting to remove the grid.

Stages run as ``python -m grid_inpainting.<stage>``; see grid_inpainting/README.md.
"""
