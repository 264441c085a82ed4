"""One image reader: EXIF orientation applied everywhere (reader, pull, prepare, handler), clear errors."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from exif_photos import (
    HEIGHT,
    RED_BOX,
    RED_POLYGON,
    UPRIGHT,
    WIDTH,
    close_to_upright,
    jpeg_bytes,
    stored_pixels,
    write_oriented_jpegs,
)

from quadratseg.errors import QuadratsegError
from quadratseg.images import (
    ImageReadError,
    decode_image_b64,
    decode_image_rgb,
    exif_orientation,
    image_key,
    image_size,
    list_images,
    output_name,
    read_image_rgb,
    write_upright,
)

ORIENTATIONS = range(1, 9)


@pytest.fixture
def oriented(tmp_path) -> dict[int, Path]:
    return write_oriented_jpegs(tmp_path / "oriented")


def _raw_pixels(path: Path) -> np.ndarray:
    """The stored pixels, EXIF ignored (what a naive reader sees)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_the_fixture_stores_turned_pixels(oriented):
    for n, path in oriented.items():
        assert exif_orientation(path) == n
        raw = _raw_pixels(path)
        assert raw.shape == stored_pixels(n).shape
        assert close_to_upright(raw) == (n == 1)  # ignoring EXIF gets 7 of the 8 wrong


@pytest.mark.parametrize("n", ORIENTATIONS)
def test_read_image_rgb_gives_the_upright_picture(oriented, n):
    image = read_image_rgb(oriented[n])
    assert image.dtype == np.uint8 and image.flags.c_contiguous
    assert close_to_upright(image), n
    assert image_size(oriented[n]) == (WIDTH, HEIGHT)
    data = oriented[n].read_bytes()
    assert image_size(data) == (WIDTH, HEIGHT)
    assert close_to_upright(decode_image_rgb(data))


def test_all_orientations_read_the_same(oriented):
    images = [read_image_rgb(oriented[n]) for n in ORIENTATIONS]
    for image in images[1:]:
        assert np.abs(image.astype(int) - images[0]).max() <= 24  # JPEG noise only
        assert np.abs(image.astype(int) - images[0]).mean() < 3


@pytest.mark.parametrize("n", ORIENTATIONS)
def test_request_images_are_decoded_upright(n):
    from quadratseg.nuclio import decode_image_b64 as nuclio_decode
    from quadratseg.nuclio import parse_image_request

    b64 = base64.b64encode(jpeg_bytes(n)).decode()
    assert close_to_upright(decode_image_b64(b64))
    assert close_to_upright(nuclio_decode(b64))
    _, image, threshold = parse_image_request(json.dumps({"image": b64, "threshold": 0.3}), 0.5)
    assert close_to_upright(image) and threshold == 0.3


def test_unreadable_images_say_which_and_why(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_bytes(6)[:400])
    for path, why in (
        (tmp_path / "missing.jpg", "does not exist"),
        (corrupt, "not a readable image"),
        (truncated, "truncated|broken|error"),
        (tmp_path, "folder"),
    ):
        with pytest.raises(ImageReadError, match=why) as err:
            read_image_rgb(path)
        assert str(path) in str(err.value)
        assert isinstance(err.value, QuadratsegError)
    with pytest.raises(ImageReadError, match=r"missing\.jpg"):
        image_size(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="base64"):
        decode_image_b64("nope")
    with pytest.raises(ValueError, match="not a base64-encoded image"):
        decode_image_b64(base64.b64encode(b"GIF? no").decode())


def test_grayscale_alpha_and_16_bit_images_become_rgb(tmp_path):
    import cv2

    gray16 = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    rgba = np.dstack([UPRIGHT, np.full((HEIGHT, WIDTH), 100, np.uint8)])
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    g = read_image_rgb(tmp_path / "g16.png")
    assert g.shape == (48, 64, 3) and g.dtype == np.uint8
    assert np.array_equal(g[..., 0], (gray16 >> 8).astype(np.uint8))
    assert np.array_equal(read_image_rgb(tmp_path / "rgba.png"), UPRIGHT)


def test_write_upright_copies_plain_files_and_turns_tagged_ones(oriented, tmp_path):
    plain = write_upright(oriented[1], tmp_path / "plain.jpg")
    assert plain.read_bytes() == oriented[1].read_bytes()
    for n in (3, 6, 7):
        target = write_upright(oriented[n], tmp_path / f"up{n}.jpg")
        assert exif_orientation(target) == 1
        assert close_to_upright(_raw_pixels(target))  # even a reader that ignores EXIF sees it upright


def test_list_images_is_recursive_and_keys_keep_the_suffix(tmp_path):
    root = tmp_path / "photos"
    for rel in (
        "a.jpg",
        "a.png",
        "site/2020/b.JPG",
        "site/c.tif",
        ".hidden/d.jpg",
        "site/.e.jpg",
        "notes.txt",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    paths = list_images(root)
    keys = [image_key(p, root) for p in paths]
    assert keys == ["a.jpg", "a.png", "site/2020/b.JPG", "site/c.tif"]
    assert len({output_name(k, ".png") for k in keys}) == len(keys)
    assert output_name("a.jpg", ".png") == "a.jpg.png"
    assert [image_key(p, root) for p in list_images(root, recursive=False)] == ["a.jpg", "a.png"]
    assert (
        list_images(root / "a.png") == [root / "a.png"]
        and image_key(root / "a.png", root / "a.png") == "a.png"
    )
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "x.jpg").write_bytes(b"x")
    with pytest.raises(QuadratsegError, match="holds no image"):
        list_images(tmp_path / "empty")
    with pytest.raises(QuadratsegError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(QuadratsegError, match="not an image file"):
        list_images(root / "notes.txt")


# ----------------------------------------------------------------------------- pull and prepare


def _oriented_project():
    from quadratseg.cvat_tasks import FrameData, ProjectData, TaskData
    from quadratseg.formats.cvat_labels import LabelSpec
    from quadratseg.formats.cvat_xml import Shape

    def frames(names):
        return [
            FrameData(
                frame=i,
                name=f"{name}.jpg",
                width=WIDTH,  # CVAT reports the upright size (swapped for orientations 5..8)
                height=HEIGHT,
                shapes=[Shape("polygon", "Acropora", RED_POLYGON.copy())],
                load_bytes=lambda n=n: jpeg_bytes(n),
            )
            for i, (name, n) in enumerate(names)
        ]

    train = TaskData(1, "train task", "train", frames=frames([(f"o{n}", n) for n in ORIENTATIONS]))
    val = TaskData(2, "val task", "val", frames=frames([("v6", 6), ("v8", 8)]))
    return ProjectData("oriented", [LabelSpec("Acropora", "polygon")], [train, val], source="test")


@pytest.fixture
def oriented_dataset(tmp_path, dataset_name):
    import fiftyone as fo

    from data_engineering.pull import pull_project
    from quadratseg.taxonomy import load_taxonomy

    summary = pull_project(_oriented_project(), dataset_name, tmp_path / "media", load_taxonomy())
    return summary, fo.load_dataset(dataset_name)


def test_pull_imports_all_orientations_with_the_annotations_in_place(oriented_dataset):
    summary, ds = oriented_dataset
    assert summary.images_skipped == [] and summary.images == 10
    assert ds.count() == 10
    for sample in ds:
        assert (sample.metadata.width, sample.metadata.height) == (WIDTH, HEIGHT)
        image = read_image_rgb(sample.filepath)
        assert close_to_upright(image), sample.cvat_image_name
        (poly,) = sample.gt_polylines.polylines
        xy = np.asarray(poly.points[0]) * [WIDTH, HEIGHT]
        assert np.allclose(xy, RED_POLYGON, atol=0.01)
        x0, y0, x1, y1 = RED_BOX
        assert np.abs(image[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(int) - (220, 30, 30)).max() < 20
        assert oct(Path(sample.filepath).stat().st_mode & 0o777) != oct(0o600)  # readable by others


def test_prepare_writes_upright_images_without_orientation(oriented_dataset, tmp_path):
    from coral_seg_yolo.prepare_data import write_seg_layout
    from DINOv2_mmseg.prepare_data import write_mmseg_layout

    _, ds = oriented_dataset
    write_seg_layout(ds, tmp_path / "yolo")
    written = sorted((tmp_path / "yolo" / "images").rglob("*.jpg"))
    assert len(written) == 10
    for path in written:
        assert exif_orientation(path) == 1 and close_to_upright(_raw_pixels(path)), path.name
        label = (tmp_path / "yolo" / "labels" / path.parent.name / f"{path.stem}.txt").read_text().split()
        xy = np.asarray(label[1:], float).reshape(-1, 2) * [WIDTH, HEIGHT]
        assert np.allclose(xy, RED_POLYGON, atol=0.5)
    summary = write_seg_layout(ds, tmp_path / "tiles", tile=32, overlap=0.0)
    tiles = sorted((tmp_path / "tiles" / "images").rglob("*.jpg"))
    assert len(tiles) == sum(summary["images"].values()) > len(written)
    assert [exif_orientation(path) for path in tiles] == [1] * len(tiles)
    write_mmseg_layout(ds, tmp_path / "mmseg")
    mmseg_images = sorted((tmp_path / "mmseg").glob("*/data/*.jpg"))
    assert len(mmseg_images) == 10
    for path in mmseg_images:
        assert exif_orientation(path) == 1 and close_to_upright(_raw_pixels(path)), path.name
        mask = read_image_rgb(path.parent.parent / "labels" / f"{path.stem}.png")[..., 0]
        x0, y0, x1, y1 = RED_BOX
        assert mask[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].min() > 0 and mask[HEIGHT - 1, 0] == 0


# ----------------------------------------------------------------------------- handler


def test_handler_sees_the_upright_image(tmp_path):
    from nuclio_driver import call_handler

    from grid_inpainting.deploy_as_zip import deploy_as_zip

    path = deploy_as_zip("pth-lama", None, str(tmp_path / "zip"), backend="opencv-telea")
    with zipfile.ZipFile(path) as archive:
        assert "nuclio/quadratseg/images.py" in archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    keypoints = [None] * 117
    bodies = [
        json.dumps({"image": base64.b64encode(jpeg_bytes(n)).decode(), "keypoints": keypoints})
        for n in (6, 3)
    ]
    env = {"QUADRATSEG_INPAINT_BACKEND": "opencv-telea"}
    answers = call_handler(tmp_path / "unzipped" / "nuclio", bodies, "grid_inpainting", env)
    assert len(answers) == len(bodies) == 2
    for answer in answers:
        assert answer["status"] == 200, answer
        assert (answer["body"]["width"], answer["body"]["height"]) == (WIDTH, HEIGHT)
        assert close_to_upright(decode_image_b64(answer["body"]["image"]))


def test_a_corrupt_file_is_a_clear_error_even_after_ultralytics_patched_pil(tmp_path):
    """ultralytics replaces PIL's Image.open with one that imports a HEIF plugin for files PIL cannot
    identify; the reader still says which file and why, in every process that imported ultralytics."""
    import ultralytics  # noqa: F401  (the import installs the patch)

    from quadratseg.images import ImageReadError, read_image_rgb

    bad = tmp_path / "corrupt###name.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError, match=r"corrupt###name\.jpg: not a readable image file"):
        read_image_rgb(bad)


@pytest.mark.parametrize("n", ORIENTATIONS)
def test_the_fast_jpeg_path_and_pils_path_give_the_same_pixels(oriented, n):
    """JPEGs are decoded by simplejpeg with the orientation applied by us; PIL with exif_transpose is
    the reference (both use libjpeg, so the pixels agree to the rounding of the decoders)."""
    from PIL import Image, ImageOps

    from quadratseg.images import _decode_jpeg

    fast = _decode_jpeg(oriented[n].read_bytes())
    with Image.open(oriented[n]) as image:
        reference = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert fast is not None and fast.shape == reference.shape and fast.flags.c_contiguous
    assert np.abs(fast.astype(int) - reference).max() <= 2
    truncated = oriented[n].read_bytes()[:-200]
    assert _decode_jpeg(truncated) is None  # left to PIL, which says it is truncated


def test_two_report_images_of_one_name_are_both_kept(tmp_path):
    """A report whose sections name two pictures alike shows each picture, not the second one twice."""
    import cv2

    from quadratseg.report import Report

    report = Report(tmp_path)
    section = report.section("s")
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    report.add_image(section, "overlay", red, "first")
    report.add_image(section, "overlay", blue, "second")
    paths = [path for path, _ in section.figures]
    assert len(set(paths)) == 2, paths
    first, second = (cv2.imread(str(tmp_path / p))[..., ::-1] for p in paths)
    assert first[..., 0].mean() > 200 and second[..., 2].mean() > 200


def test_a_photo_scan_never_lists_the_excluded_or_hidden_folders(tmp_path, monkeypatch):
    """An output folder inside the photo folder (tens of thousands of overlays after a survey's run)
    and hidden folders (.git, a sync tool's cache) are left out without being listed."""
    import os

    from quadratseg.images import scan_images

    for folder in ("site/2024", "out/overlays/site/2024", ".cache/thumbs"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "q1.jpg").write_bytes(jpeg_bytes(1))
    listed: list[str] = []
    real_scandir = os.scandir

    def spy(path="."):
        listed.append(os.path.abspath(os.fspath(path)))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    scan = scan_images(tmp_path, exclude=[tmp_path / "out"])
    assert [p.relative_to(tmp_path).as_posix() for p in scan.images] == ["site/2024/q1.jpg"]
    entered = [p for p in listed if p.startswith((str(tmp_path / "out"), str(tmp_path / ".cache")))]
    assert not entered, entered


def test_a_photo_folder_inside_an_excluded_folder_lists_nothing_of_it(tmp_path):
    """Photos under the output folder itself (OUT/warped given as the photos, OUT excluded) are all
    excluded, the top folder's as its sub-folders', as they were before the walk was pruned."""
    from quadratseg.images import scan_images

    for folder in ("out/warped", "out/warped/site"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "q1.jpg").write_bytes(jpeg_bytes(1))
    with pytest.raises(QuadratsegError, match="holds no image"):
        scan_images(tmp_path / "out" / "warped", exclude=[tmp_path / "out"])
    assert len(scan_images(tmp_path / "out" / "warped").images) == 2


def test_a_jpeg_warning_that_loses_no_picture_is_read_and_one_that_does_is_refused():
    """libjpeg warns of extraneous bytes before the end marker (some cameras' padding) and of a
    premature end of the data (a copy cut short, with an end marker after it): the first photo is
    read with every pixel, the second is refused with libjpeg's words."""
    import cv2

    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur((rng.random((96, 128, 3)) * 255).astype(np.uint8), (5, 5), 1)
    data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    padded = data[:-2] + b"\x00\x07\x00" + b"\xff\xd9"
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decode_image_rgb(padded, "padded"), expected)
    with pytest.raises(
        ImageReadError, match="corrupt or truncated JPEG: libjpeg says 'Corrupt JPEG data: premature"
    ):
        decode_image_rgb(data[: len(data) // 2] + b"\xff\xd9", "cut")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_points_follow_the_pixels_read_upright(orientation):
    """A marked pixel of a stored (30 x 40) array: its centre mapped by upright_points is the centre of
    the marked pixel in the array the reader turns upright (the reader's own turn, _UPRIGHT)."""
    from quadratseg.images import _UPRIGHT, upright_points

    stored = np.zeros((30, 40, 3), np.uint8)
    stored[7, 11] = 255
    upright = _UPRIGHT[orientation](stored) if orientation != 1 else stored
    row, col = np.argwhere(upright[..., 0] == 255)[0]
    assert upright_points(np.array([[11.5, 7.5]]), orientation, (40, 30)).tolist() == [[col + 0.5, row + 0.5]]


def test_replace_images_swaps_whole_files_in_their_format_or_none_at_all(tmp_path):
    """Each target is rewritten in its own format with the new pixels; a target of another size
    stops the call before any file changes."""
    from PIL import Image

    from quadratseg.images import replace_images

    old = np.full((6, 8, 3), 10, np.uint8)
    Image.fromarray(old).save(tmp_path / "a.png")
    Image.fromarray(old).save(tmp_path / "b.jpg", quality=95)
    new = np.full((6, 8, 3), 200, np.uint8)
    targets = {"a": tmp_path / "a.png", "b": tmp_path / "b.jpg", "c": tmp_path / "missing.jpg"}
    assert replace_images(targets, {"a": new, "b": new}) == 2
    assert (read_image_rgb(tmp_path / "a.png") == new).all()  # PNG: exact
    assert np.abs(read_image_rgb(tmp_path / "b.jpg").astype(int) - 200).max() <= 2  # JPEG
    assert Image.open(tmp_path / "b.jpg").format == "JPEG"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(QuadratsegError, match="nothing was replaced"):
        replace_images(targets, {"a": old, "b": np.zeros((8, 6, 3), np.uint8)})  # b turned
    with pytest.raises(QuadratsegError, match=r"missing\.jpg"):
        replace_images(targets, {"a": old, "c": old})
    with pytest.raises(QuadratsegError, match="uint8"):  # a float image after a good one
        replace_images(targets, {"a": old, "b": new.astype(np.float64)})
    (tmp_path / "d.unknown").write_bytes((tmp_path / "a.png").read_bytes())
    before["d.unknown"] = (tmp_path / "d.unknown").read_bytes()
    with pytest.raises(QuadratsegError, match="nothing was replaced"):  # no format PIL writes
        replace_images({**targets, "d": tmp_path / "d.unknown"}, {"a": old, "d": old})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.jpg", "d.unknown"]  # no temporary


def test_layout_photos_are_replaced_in_the_split_the_layout_gave_them_and_names_must_be_unique(tmp_path):
    """A sample goes where ``sample_split`` (its first split tag) put it; two samples to replace
    under one name stop the call before anything is written."""
    from types import SimpleNamespace

    from PIL import Image

    from quadratseg.yolo_layout import layout_stem, replace_layout_photos

    def sample(name: str, tags: list[str], sid: str):
        return SimpleNamespace(cvat_image_name=name, tags=tags, filepath=f"/media/{name}", id=sid)

    samples = [sample("a.jpg", ["val", "train"], "000001"), sample("b.jpg", ["test"], "000002")]
    for s in samples:
        for split in ("train", "val", "test"):
            (tmp_path / split).mkdir(exist_ok=True)
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / split / f"{layout_stem(s)}.png")
    white = np.full((4, 4, 3), 255, np.uint8)
    count = replace_layout_photos(samples, {"a.jpg": white, "b.jpg": white}, lambda split: tmp_path / split)
    assert count == 1
    replaced = {
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png") if read_image_rgb(p).all()
    }
    assert replaced == {"train/a_000001.png"}  # where sample_split puts it; b is a test photo
    twice = [*samples, sample("a.jpg", ["train"], "000003")]
    with pytest.raises(QuadratsegError, match="two samples are named"):
        replace_layout_photos(twice, {"a.jpg": white}, lambda split: tmp_path / split)
