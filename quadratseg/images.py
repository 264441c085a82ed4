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

Batch inputs: :func:`list_images` (recursive; :func:`scan_images` also names the image-like files
it cannot read, e.g. HEIC or camera raw, and leaves out folders such as a run's output folder) and
:func:`image_key` (the relative path *with* its suffix, so ``a.jpg`` and ``a.png`` never share an
output: outputs are ``<key><ext>``, e.g. ``site/2020/a.jpg`` -> ``overlays/site/2020/a.jpg.jpg``).

Examples:
    >>> image_key("photos/site/2020/a.jpg", "photos")
    'site/2020/a.jpg'
    >>> output_name("site/2020/a.jpg", ".png")
    'site/2020/a.jpg.png'
"""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
IMAGE_SUFFIXES = (*JPEG_SUFFIXES, ".png", ".bmp", ".tif", ".tiff", ".webp")
# image files no reader here decodes (HEIF, camera raw): named in a warning, never dropped silently
UNREADABLE_IMAGE_SUFFIXES = (
    ".heic",
    ".heif",
    ".avif",
    ".jxl",
    ".dng",
    ".cr2",
    ".cr3",
    ".crw",
    ".nef",
    ".nrw",
    ".arw",
    ".srf",
    ".sr2",
    ".orf",
    ".rw2",
    ".raf",
    ".pef",
    ".srw",
    ".x3f",
    ".3fr",
    ".iiq",
    ".erf",
    ".raw",
)
CONVERT_HINT = "convert them to JPEG, PNG or TIFF first (raw files with a raw converter)"
ORIENTATION_TAG = 0x0112
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # 90-degree turns: stored width and height are swapped
# libjpeg's warnings after which part of the picture is missing or garbled (libjpeg fills it with grey
# and goes on; OpenCV writes them on stderr, PIL drops them, simplejpeg stops on them): the photo is
# refused
LIBJPEG_DATA_LOSS = (
    "Corrupt JPEG data: premature end of data segment",  # the end marker came before the last rows
    "Premature end of JPEG file",
    "Corrupt JPEG data: bad Huffman code",
    "Corrupt JPEG data: bad arithmetic code",
    "Corrupt JPEG data: found marker",  # ... instead of RSTn: a restart interval lost
)


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


def scale_to_uint8(array: np.ndarray) -> np.ndarray:
    """Integer samples (a 16-bit image, HW or HWC) -> uint8, scaled by the data's bit depth: the
    smallest of 8..16 bits that holds the image's maximum. 10-, 12- or 14-bit sensor data stored in
    a 16-bit TIFF or PNG fills the 8 bits as full 16-bit data does (12-bit data, maximum up to 4095,
    is divided by 16; 16-bit data by 256); data up to 255 is kept as it is. Negative samples become 0
    and samples above 16 bits 255.

    Examples:
        >>> scale_to_uint8(np.array([0, 1024, 4095], np.uint16)).tolist()
        [0, 64, 255]
        >>> scale_to_uint8(np.array([0, 255], np.uint16)).tolist(), sample_bits(np.array([4095]))
        ([0, 255], 12)
    """
    if array.dtype not in (np.uint8, np.uint16):
        array = np.clip(array, 0, 0xFFFF).astype(np.uint16)
    shifted = array >> (sample_bits(array) - 8)
    return shifted.astype(np.uint8)


def sample_bits(array: np.ndarray) -> int:
    """The data's bit depth: the smallest of 8..16 bits that holds the array's maximum."""
    return min(16, max(8, int(array.max(initial=0)).bit_length()))


def _sixteen_bit(image: Any) -> bool:
    """Whether a PIL image's file stores more than 8 bits a sample (16-bit grey, or 48/64-bit colour,
    of which PIL's RGB keeps the high byte)."""
    if image.mode.startswith("I"):
        return True
    for tile in image.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if ";16" in str(rawmode):
            return True
    return False


def _decode_sixteen_bit(data: bytes, orientation: int) -> np.ndarray | None:
    """A 16-bit PNG or TIFF -> uint8 RGB (H, W, 3) upright, scaled by the data's bit depth
    (:func:`scale_to_uint8`), with OpenCV's decoder; None when OpenCV cannot read it as 16-bit."""
    import cv2

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        return None
    if array.ndim == 3 and array.shape[2] in (3, 4):  # BGR(A): the alpha is dropped
        array = cv2.cvtColor(array[..., :3], cv2.COLOR_BGR2RGB)
    elif array.ndim == 3:  # grey and alpha
        array = array[..., 0]
    rgb = as_rgb_uint8(array)
    return np.ascontiguousarray(_UPRIGHT[orientation](rgb) if orientation != 1 else rgb)


def _to_rgb(image: Any, what: str, source: str | Path | bytes | None = None) -> np.ndarray:
    """A PIL image -> uint8 RGB (H, W, 3) upright; ``source`` (its file or bytes) is decoded again at
    full depth when the image has 16 bits a sample (:func:`_decode_sixteen_bit`)."""
    from PIL import ImageOps

    try:
        if source is not None and _sixteen_bit(image):
            data = Path(source).read_bytes() if isinstance(source, str | Path) else bytes(source)
            deep = _decode_sixteen_bit(data, _orientation(image))
            if deep is not None:
                return deep
        image.load()
        upright = ImageOps.exif_transpose(image) if _orientation(image) != 1 else image
        if upright.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit: by the data's bit depth
            return np.ascontiguousarray(as_rgb_uint8(np.asarray(upright)))
        return np.ascontiguousarray(np.asarray(upright.convert("RGB"), dtype=np.uint8))
    except ImageReadError:
        raise
    except Exception as exc:  # truncated data, decoder errors, bombs
        raise ImageReadError(f"cannot read image {what}: {type(exc).__name__}: {exc}") from None
    finally:
        image.close()


def read_image_rgb(path: str | Path) -> np.ndarray:
    """uint8 RGB (H, W, 3) of the upright picture (EXIF orientation applied); a 16-bit image is
    scaled by its data's bit depth (:func:`scale_to_uint8`).

    Raises:
        ImageReadError: the file is missing, not an image or corrupt (the message says which file and
            why), e.g. a JPEG cut short even when it still ends in an end marker ("corrupt or
            truncated JPEG": libjpeg's own warning, :func:`_decode_jpeg`).
    """
    path = Path(path)
    if path.suffix.lower() in JPEG_SUFFIXES and path.is_file():
        fast = _decode_jpeg(path.read_bytes(), str(path))
        if fast is not None:
            return fast
    return _to_rgb(_open(path, str(path)), str(path), path)


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


def as_rgb_uint8(array: np.ndarray, what: str = "the image") -> np.ndarray:
    """An image array as uint8 RGB (H, W, 3): grey (H, W) or (H, W, 1) repeated to three channels,
    RGBA without its alpha, 16-bit samples scaled by their bit depth (:func:`scale_to_uint8`).

    Raises:
        ValueError: another shape, or samples that are not integers (the message gives the shape and
            type of ``what``).
    """
    a = np.asarray(array)
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{what} has {a.dtype} samples; give uint8 RGB (H, W, 3)")
        a = scale_to_uint8(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return a[..., :3]
    raise ValueError(f"{what} has shape {a.shape}; give RGB (H, W, 3), RGBA (H, W, 4) or grey (H, W)")


def upright_points(points_xy: np.ndarray, orientation: int, stored_size: tuple[int, int]) -> np.ndarray:
    """Points (N, 2) in pixels of a file as stored (x right, y down, origin at the top-left corner of
    the top-left pixel) -> the same points in the upright picture, after EXIF ``orientation`` 1..8, as
    :func:`read_image_rgb` shows it. ``stored_size``: (width, height) of the stored pixels.

    Examples:
        >>> upright_points(np.array([[10.0, 2.0]]), 6, (40, 30)).tolist()  # turned 90 degrees clockwise
        [[28.0, 10.0]]
    """
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    w, h = float(stored_size[0]), float(stored_size[1])
    turned = {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (h - y, x),
        7: (h - y, w - x),
        8: (y, w - x),
    }
    if orientation not in turned:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    return np.stack(turned[orientation], axis=1)


def _decode_jpeg(data: bytes, what: str = "data") -> np.ndarray | None:
    """A complete JPEG -> uint8 RGB upright, with libjpeg-turbo through simplejpeg (the same pixels
    as OpenCV's and PIL's decoders, about twice as fast as OpenCV's here, without the GIL) and the
    orientation read from the EXIF header; None for anything else (not a JPEG, no end marker, a
    format simplejpeg does not decode such as CMYK), which the PIL path then reads or refuses with
    its clear errors. The paths give the same pixels (tests/test_images.py).

    A JPEG cut short but still ending in an end marker would decode with its missing rows grey;
    libjpeg warns ("premature end of data segment"), the decoder stops on that warning and the
    photo is refused. A warning that loses no picture (extraneous bytes before a marker) is not.

    Raises:
        ImageReadError: "corrupt or truncated JPEG": libjpeg warned that part of the picture is
            missing (:data:`LIBJPEG_DATA_LOSS`; ``what`` names the data).
    """
    import simplejpeg

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
    try:
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        warning = str(exc)
        if warning.startswith(LIBJPEG_DATA_LOSS):
            raise ImageReadError(
                f"cannot read image {what}: corrupt or truncated JPEG: libjpeg says '{warning}' (part "
                "of the picture is missing and would read as grey); copy or export the photo again"
            ) from None
        try:  # a warning that loses nothing, or a JPEG this decoder does not take
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
        except ValueError:
            return None
    return np.ascontiguousarray(_UPRIGHT[orientation](rgb)) if orientation != 1 else rgb


def decode_image_rgb(data: bytes, what: str = "data") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB (H, W, 3), EXIF orientation applied; a 16-bit image is
    scaled by its data's bit depth (:func:`scale_to_uint8`).

    Raises:
        ImageReadError: the bytes are not a readable image (``what`` names them in the message).
    """
    data = bytes(data)
    fast = _decode_jpeg(data, what)
    if fast is not None:
        return fast
    return _to_rgb(_open(data, what), what, data)


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
    what = "data" if isinstance(source, bytes | bytearray) else str(source)
    image = _open(source if isinstance(source, bytes | bytearray) else Path(source), what)
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
    params = {"quality": jpeg_quality} if suffix in JPEG_SUFFIXES else {}
    Image.fromarray(rgb).save(target, **params)
    return target


def replace_images(targets: dict[str, Path], images: dict[str, np.ndarray], jpeg_quality: int = 95) -> int:
    """Overwrite the image file ``targets[name]`` with ``images[name]`` ((H, W, 3) uint8 RGB, the
    size of the upright picture it replaces) for every name both hold, in the file's own format
    (JPEG at ``jpeg_quality``), each written whole before it takes the old file's place. A training
    layout's photos are swapped this way for the same photos as an earlier stage leaves them.
    Returns how many were replaced.

    Raises:
        QuadratsegError: an image that is not (H, W, 3) uint8, or a target that is not a readable
            image of its size in a format PIL writes (nothing is replaced then).
    """
    from PIL import Image

    from quadratseg.atomic import atomic_write_bytes

    formats = Image.registered_extensions()
    names = [name for name in targets if name in images]
    for name in names:
        path, image = Path(targets[name]), np.asarray(images[name])
        size = image_size(path) if path.is_file() else None
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise QuadratsegError(
                f"the image for {path} is {image.dtype} {image.shape}, not (H, W, 3) uint8 RGB; "
                "nothing was replaced"
            )
        if size != (image.shape[1], image.shape[0]) or path.suffix.lower() not in formats:
            raise QuadratsegError(
                f"{path}: no image of {name}'s size {image.shape[1::-1]} to replace (found {size}); "
                "nothing was replaced"
            )
    encoded = {}  # every file encoded before the first is replaced
    for name in names:
        path = Path(targets[name])
        params = {"quality": jpeg_quality} if path.suffix.lower() in JPEG_SUFFIXES else {}
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(images[name])).save(
            buffer, format=formats[path.suffix.lower()], **params
        )
        encoded[path] = buffer.getvalue()
    for path, data in encoded.items():
        atomic_write_bytes(path, data)
    return len(names)


@dataclass(frozen=True)
class ImageScan:
    """What :func:`scan_images` found: the ``images`` it reads (sorted by relative path), the
    image-like files it cannot read (``unreadable``: HEIC, camera raw)."""

    images: list[Path]
    unreadable: list[Path] = field(default_factory=list)


def _under(folder: Path, folders: list[Path]) -> bool:
    return any(folder == other or folder.is_relative_to(other) for other in folders)


def scan_images(source: str | Path, recursive: bool = True, exclude: Iterable[str | Path] = ()) -> ImageScan:
    """The image files under a folder (sub-folders too), or the file itself, and the image-like
    files it cannot read (:data:`UNREADABLE_IMAGE_SUFFIXES`), named in one grouped warning.

    Hidden files and folders (``.name``) are left out, and so is everything under a folder of
    ``exclude`` (e.g. a run's output folder inside the photo folder; compared as resolved paths),
    the folder itself included when it lies under one: neither is listed, so an output folder of a
    survey's thousands of files costs nothing.

    Raises:
        QuadratsegError: nothing readable with an image suffix there (the unreadable ones are named).
    """
    path = Path(source)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return ImageScan([path])
        if suffix in UNREADABLE_IMAGE_SUFFIXES:
            raise QuadratsegError(f"{path}: {suffix} images cannot be read here; {CONVERT_HINT}")
        raise QuadratsegError(f"{path} is not an image file (suffixes: {', '.join(IMAGE_SUFFIXES)})")
    images: list[Path] = []
    unreadable: list[Path] = []
    left_out = [Path(folder).resolve() for folder in exclude]
    if path.is_dir() and not (left_out and _under(path.resolve(), left_out)):
        for folder, subfolders, files in os.walk(path):
            here = Path(folder)
            # pruned before they are listed: hidden folders, and the excluded ones (a run's outputs)
            subfolders[:] = sorted(
                name
                for name in subfolders
                if recursive
                and not name.startswith(".")
                and not (left_out and _under((here / name).resolve(), left_out))
            )
            for name in files:
                suffix = Path(name).suffix.lower()
                if name.startswith(".") or (
                    suffix not in IMAGE_SUFFIXES and suffix not in UNREADABLE_IMAGE_SUFFIXES
                ):
                    continue
                file = here / name
                if file.is_file():
                    (images if suffix in IMAGE_SUFFIXES else unreadable).append(file)
        images.sort(key=lambda p: p.relative_to(path).as_posix())
        unreadable.sort(key=lambda p: p.relative_to(path).as_posix())
    if unreadable:
        logger.warning("%s", unreadable_note(unreadable, path))
    if not images:
        where = "does not exist" if not path.exists() else "holds no image"
        found = f"; {unreadable_note(unreadable, path)}" if unreadable else ""
        raise QuadratsegError(
            f"{path} {where} (looked{' recursively' if recursive else ''} for "
            f"{', '.join(IMAGE_SUFFIXES)}){found}"
        )
    return ImageScan(images, unreadable)


def unreadable_note(paths: list[Path], root: Path, shown: int = 5) -> str:
    """One line naming image-like files that cannot be read (the first ``shown``, relative to
    ``root``), their suffixes and what to do.

    Examples:
        >>> unreadable_note([Path("s/a.heic"), Path("s/b.dng")], Path("s"))
        'ignoring 2 image files that cannot be read here (.dng, .heic): a.heic, b.dng; convert them ...'
    """
    names = [p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in paths]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    suffixes = ", ".join(sorted({p.suffix.lower() for p in paths}))
    return (
        f"ignoring {len(paths)} image file{'' if len(paths) == 1 else 's'} that cannot be read here "
        f"({suffixes}): {', '.join(names[:shown])}{more}; {CONVERT_HINT}"
    )


def list_images(source: str | Path, recursive: bool = True, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Image files under a folder (sub-folders too; sorted by relative path), or the file itself
    (:func:`scan_images`: hidden files and the ``exclude`` folders left out, image-like files it
    cannot read named in a warning).

    Raises:
        QuadratsegError: nothing with an image suffix there.
    """
    return scan_images(source, recursive, exclude).images


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
