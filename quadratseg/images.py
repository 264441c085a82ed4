"""One image reader for every stage and handler: EXIF orientation applied, clear errors.

Photos from down-looking cameras often carry an EXIF orientation tag (0x0112): the stored
pixels are rotated or mirrored and the viewer is told how to turn them upright. CVAT shows
(and annotates) the upright picture and its manifest gives the upright size (width and height
swapped for orientations 5..8). So every reader in QUADRATSEG works on the upright picture:

* :func:`read_image_rgb` - a file -> uint8 RGB (H, W, 3), EXIF orientation applied;
* :func:`decode_image_rgb` - bytes (a request, a CVAT frame) -> the same;
* :func:`image_size` - (width, height) of the upright picture, from the header only;
* :func:`write_upright` - a copy for third-party readers (ultralytics, MMSeg): the file's
  bytes as they are when it has no orientation to apply, else the upright pixels without an
  orientation tag. ``prepare_data`` writes its images with it, so training reads upright
  pictures whatever the library does with EXIF.

Batch inputs: :func:`list_images` (recursive) and :func:`image_key` (the relative path *with*
its suffix, so ``a.jpg`` and ``a.png`` never share an output: outputs are ``<key><ext>``,
e.g. ``site/2020/a.jpg`` -> ``overlays/site/2020/a.jpg.jpg``).

Examples:
    >>> image_key("photos/site/2020/a.jpg", "photos")
    'site/2020/a.jpg'
    >>> output_name("site/2020/a.jpg", ".png")
    'site/2020/a.jpg.png'
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ORIENTATION_TAG = 0x0112
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # 90-degree turns: stored width and height are swapped


class ImageReadError(QuadratsegError):
    """An image file or payload cannot be decoded (missing, not an image, truncated)."""


def _open(source: Any, what: str):
    """PIL image (lazy: header only) of a path or bytes; ImageReadError naming ``what``."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(source, bytes | bytearray | memoryview):
            return Image.open(io.BytesIO(bytes(source)))
        return Image.open(source)
    except FileNotFoundError:
        raise ImageReadError(f"cannot read image {what}: the file does not exist") from None
    except IsADirectoryError:
        raise ImageReadError(f"cannot read image {what}: it is a folder") from None
    except (UnidentifiedImageError, ImportError):
        # ImportError: once ultralytics is imported, its patched Image.open answers an unidentified
        # file by importing an optional HEIF plugin, which is not installed
        raise ImageReadError(
            f"cannot read image {what}: not a readable image file (not an image, or an unsupported format)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {what}: {exc}") from None


def _orientation(image: Any) -> int:
    try:
        value = int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block: treat the pixels as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _to_rgb(image: Any, what: str) -> np.ndarray:
    from PIL import ImageOps

    try:
        image.load()
        upright = ImageOps.exif_transpose(image) if _orientation(image) != 1 else image
        if upright.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit: keep the high byte
            array = np.asarray(upright)
            gray = (array >> 8).astype(np.uint8) if array.max(initial=0) > 255 else array.astype(np.uint8)
            return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
        return np.ascontiguousarray(np.asarray(upright.convert("RGB"), dtype=np.uint8))
    except ImageReadError:
        raise
    except Exception as exc:  # truncated data, decoder errors, bombs
        raise ImageReadError(f"cannot read image {what}: {type(exc).__name__}: {exc}") from None
    finally:
        image.close()


def read_image_rgb(path: str | Path) -> np.ndarray:
    """uint8 RGB (H, W, 3) of the upright picture (EXIF orientation applied).

    Raises:
        ImageReadError: the file is missing, not an image or corrupt (the message says which file and why).
    """
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg") and path.is_file():
        fast = _decode_jpeg(path.read_bytes())
        if fast is not None:
            return fast
    return _to_rgb(_open(path, str(path)), str(path))


# EXIF orientation -> the numpy operation that turns the stored pixels upright (PIL's exif_transpose:
# 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90)
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """A complete JPEG -> uint8 RGB upright, with OpenCV's decoder (libjpeg-turbo, about 3 times
    faster than PIL's path here) and the orientation read from the EXIF header; None for anything
    else (not a JPEG, no end marker, a decoder failure), which the PIL path then reads or refuses
    with its clear errors. Both paths give the same pixels (tests/test_images.py)."""
    import cv2

    if not (data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"):
        return None
    try:
        header = _open(data, "data")
    except ImageReadError:
        return None
    try:
        orientation = _orientation(header)
    finally:
        header.close()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        return None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(_UPRIGHT[orientation](rgb)) if orientation != 1 else rgb


def decode_image_rgb(data: bytes, what: str = "data") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB (H, W, 3), EXIF orientation applied.

    Raises:
        ImageReadError: the bytes are not a readable image (``what`` names them in the message).
    """
    fast = _decode_jpeg(bytes(data))
    if fast is not None:
        return fast
    return _to_rgb(_open(data, what), what)


def decode_image_b64(data: str) -> np.ndarray:
    """A base64 image (CVAT's ``image`` field) -> uint8 RGB (H, W, 3), EXIF orientation applied.

    Raises:
        ValueError: not base64 or not a readable image (handlers answer it with status 400).
    """
    import base64
    import binascii

    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError(f"the 'image' field is not base64 ({exc})") from None
    try:
        return decode_image_rgb(raw, "in the 'image' field")
    except ImageReadError as exc:
        raise ValueError(f"the 'image' field is not a base64-encoded image ({exc})") from None


def exif_orientation(source: str | Path | bytes) -> int:
    """The EXIF orientation (1..8; 1 when there is none) of a file or encoded bytes."""
    image = _open(source if isinstance(source, bytes | bytearray) else Path(source), str(source)[:80])
    try:
        return _orientation(image)
    finally:
        image.close()


def image_size(source: str | Path | bytes) -> tuple[int, int]:
    """(width, height) of the upright picture, read from the header (no full decode).

    Raises:
        ImageReadError: the file is missing or not an image.
    """
    what = "data" if isinstance(source, bytes | bytearray) else str(source)
    image = _open(source if isinstance(source, bytes | bytearray) else Path(source), what)
    try:
        width, height = image.size
        return (height, width) if _orientation(image) in TRANSPOSED_ORIENTATIONS else (width, height)
    finally:
        image.close()


def write_upright(source: str | Path, target: str | Path, jpeg_quality: int = 95) -> Path:
    """Copy ``source`` to ``target`` so that any reader sees the upright picture.

    Without an orientation to apply (none, or 1) the bytes are copied as they are. Otherwise the
    upright pixels are written in the same format (JPEG at ``jpeg_quality``) with no EXIF block,
    so readers that ignore EXIF and readers that apply it agree. Returns ``target``.

    Raises:
        ImageReadError: ``source`` cannot be read.
    """
    source, target = Path(source), Path(target)
    if exif_orientation(source) == 1:
        shutil.copyfile(source, target)
        return target
    from PIL import Image

    rgb = read_image_rgb(source)
    suffix = target.suffix.lower()
    params = {"quality": jpeg_quality} if suffix in (".jpg", ".jpeg") else {}
    Image.fromarray(rgb).save(target, **params)
    return target


def list_images(source: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under a folder (sub-folders too; sorted by relative path), or the file itself.

    Hidden files and folders (``.name``) are left out.

    Raises:
        QuadratsegError: nothing with an image suffix there.
    """
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return [path]
        raise QuadratsegError(f"{path} is not an image file (suffixes: {', '.join(IMAGE_SUFFIXES)})")
    paths = []
    if path.is_dir():
        candidates = path.rglob("*") if recursive else path.iterdir()
        paths = sorted(
            (
                p
                for p in candidates
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            ),
            key=lambda p: p.relative_to(path).as_posix(),
        )
    if not paths:
        where = "does not exist" if not path.exists() else "holds no image"
        raise QuadratsegError(
            f"{path} {where} (looked{' recursively' if recursive else ''} for {', '.join(IMAGE_SUFFIXES)})"
        )
    return paths


def image_key(path: str | Path, source: str | Path) -> str:
    """The output key of an input image: its path relative to ``source`` (POSIX, suffix kept).

    ``source`` is the folder given to the batch, or the image file itself (key: its name).
    Keys are unique within a batch, so ``a.jpg`` and ``a.png`` never share an output.
    """
    path, source = Path(path), Path(source)
    if path == source or source.is_file():
        return path.name
    return path.relative_to(source).as_posix()


def output_name(key: str, ext: str) -> str:
    """Output file for a key: the key with ``ext`` appended (``a.jpg`` -> ``a.jpg.png``)."""
    return f"{key}{ext}"
