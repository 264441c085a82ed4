"""The same picture stored as JPEG with each of the 8 EXIF orientations (for the image-reader tests).

The stored pixels are turned so that applying the orientation gives :data:`UPRIGHT` every time:
orientations 5..8 are stored with width and height swapped. The picture is made of flat
16 x 16 blocks so that JPEG (quality 100) keeps it within a few grey levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 64, 48
RED_BOX = (16, 8, 32, 24)  # x0, y0, x1, y1 of a red block (an annotated "colony")
BLUE_BOX = (48, 32, 64, 48)


def _upright() -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    x0, y0, x1, y1 = RED_BOX
    image[y0:y1, x0:x1] = (220, 30, 30)
    x0, y0, x1, y1 = BLUE_BOX
    image[y0:y1, x0:x1] = (30, 30, 220)
    image[0:16, 0:16] = (30, 200, 30)  # top-left green: tells every turn and mirror apart
    return image


UPRIGHT = _upright()
RED_POLYGON = np.array(
    [[RED_BOX[0], RED_BOX[1]], [RED_BOX[2], RED_BOX[1]], [RED_BOX[2], RED_BOX[3]], [RED_BOX[0], RED_BOX[3]]],
    float,
)


def stored_pixels(orientation: int) -> np.ndarray:
    """The pixels a camera stores with tag ``orientation`` for the upright picture."""
    from PIL import Image

    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    image = Image.fromarray(UPRIGHT)
    return np.asarray(image if inverse is None else image.transpose(inverse))


def jpeg_bytes(orientation: int) -> bytes:
    """JPEG (quality 100) of :func:`stored_pixels` with EXIF orientation ``orientation``."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored_pixels(orientation)).save(buffer, "JPEG", quality=100, exif=exif.tobytes())
    return buffer.getvalue()


def write_oriented_jpegs(folder: Path) -> dict[int, Path]:
    """``folder/o<n>.jpg`` for n = 1..8; returns {orientation: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for n in range(1, 9):
        paths[n] = folder / f"o{n}.jpg"
        paths[n].write_bytes(jpeg_bytes(n))
    return paths


def close_to_upright(image: np.ndarray, tolerance: float = 6.0) -> bool:
    """Same shape as :data:`UPRIGHT` and within JPEG noise of it."""
    return image.shape == UPRIGHT.shape and float(np.abs(image.astype(int) - UPRIGHT).mean()) < tolerance
