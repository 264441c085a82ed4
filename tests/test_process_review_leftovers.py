"""pipeline.process after an outside review: three defects, each shown through the command's own
function (``pipeline.process.process``, or ``quadratseg.cli.run`` where the exit code matters) or
the public reader, with stand-ins for the models only (the fixtures of process_fixtures.py).

1. the report's pictures of two photos whose keys differ only by punctuation shared one file;
2. single-stage runs stretched any photo (1 x 1 px, 3 x 2000 px) to the warp size;
3. a JPEG cut short but ending in an end marker read as a photo half grey.
"""

from __future__ import annotations

import re
import shutil

import cv2
import numpy as np
import pytest
from process_runs import _rows, _run

from quadratseg.images import ImageReadError, decode_image_rgb, read_image_rgb

# ------------------------------------------- 1. report pictures of keys that differ by punctuation


def _report_figures(out) -> dict[str, str]:
    """The widest-interval figures of ``report.html``: photo key -> the picture file shown."""
    html = (out / "report.html").read_text(encoding="utf-8")
    return {key: src for src, key in re.findall(r"<img src='([^']+)' alt='([^']+): an interval", html)}


def _difference(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.mark.parametrize("keys", [("a b.jpg", "a_b.jpg"), ("site/a.jpg", "site_a.jpg")])
def test_photos_whose_keys_differ_by_punctuation_each_show_their_own_overlay_in_the_report(
    photos,
    seg,
    tmp_path,
    keys,
):
    """Before, both pictures were ``img/worst_a_b_jpg.jpg``: the second photo's overlay showed
    under the first one's caption too."""
    folder = tmp_path / "keys"
    for source, key in zip(photos, keys, strict=False):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / key)
    out = tmp_path / "out"
    assert _run(folder, out, seg)["processed"] == 2
    figures = _report_figures(out)
    assert sorted(figures) == sorted(keys)
    assert len(set(figures.values())) == 2, figures
    for key, other in (keys, keys[::-1]):
        shown = cv2.imread(str(out / figures[key]))
        own, others = (cv2.imread(str(out / "overlays" / f"{k}.jpg")) for k in (key, other))
        assert _difference(shown, own) < _difference(shown, others), key


# ------------------------------------------- 2. single-stage photos that are no warped quadrat


def test_single_stage_photos_far_from_the_quadrats_shape_or_tiny_fail_alone_with_the_reason(
    photos,
    seg,
    tmp_path,
    cli,
):
    """Without --corners the photos are warped quadrats, resized to the warp size: a photo under
    32 px on a side, or whose aspect ratio is more than 1.5 times off the warped quadrat's, fails
    with its reason and the others are done (before: stretched into a cover)."""
    folder = photos[0].parent
    bgr = cv2.imread(str(photos[0]))
    shapes = {"dot.png": (1, 1), "strip.png": (3, 2000), "wide.png": (600, 256), "tiny.png": (20, 20)}
    shapes["near.png"] = (320, 256)  # 1.25 times wider than the quadrat: resized as before
    for name, size in shapes.items():
        cv2.imwrite(str(folder / name), cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))
    out = tmp_path / "out"
    code, err = cli(str(folder), str(out), "--yolo", seg, "--warp-size", "256")
    assert code == 3, err
    reasons = {row["key"]: row["reason"] for row in _rows(out / "failures.csv")}
    assert sorted(reasons) == ["dot.png", "strip.png", "tiny.png", "wide.png"], reasons
    for name in ("dot.png", "tiny.png", "strip.png"):
        assert "under 32 px" in reasons[name], reasons[name]
    assert "aspect ratio" in reasons["wide.png"] and "600 x 256" in reasons["wide.png"], reasons
    assert "256 x 256" in reasons["wide.png"] and "--corners" in reasons["wide.png"], reasons
    status = {row["photo"]: row for row in _rows(out / "status.csv")}
    assert all(status[name]["cover"] == "ok" for name in ("Q0.jpg", "Q1.jpg", "Q2.jpg", "near.png"))


# ------------------------------------------- 3. a JPEG cut short that still ends in FF D9


def _cut_middle(data: bytes) -> bytes:
    """The JPEG ``data`` with the middle of its entropy-coded data cut out and its end marker kept:
    libjpeg meets the end marker before the last rows and fills them with grey."""
    scan = data.index(b"\xff\xda")  # start of scan: the entropy-coded data follows
    return data[: scan + (len(data) - scan) // 3] + b"\xff\xd9"


def test_a_jpeg_cut_short_with_an_end_marker_fails_alone_as_corrupt(
    photos,
    seg,
    tmp_path,
    cli,
):
    """Before, libjpeg's "premature end of data segment" went to stderr and the photo's lower
    two thirds, grey, were segmented into a cover."""
    folder = photos[0].parent
    cut = folder / "cut.jpg"
    cut.write_bytes(_cut_middle(photos[1].read_bytes()))
    with pytest.raises(ImageReadError, match="corrupt or truncated JPEG"):
        read_image_rgb(cut)
    with pytest.raises(ImageReadError, match="corrupt or truncated JPEG"):
        decode_image_rgb(cut.read_bytes())
    out = tmp_path / "out"
    code, err = cli(str(folder), str(out), "--yolo", seg, "--warp-size", "256")
    assert code == 3, err
    [failure] = _rows(out / "failures.csv")
    assert failure["key"] == "cut.jpg" and "corrupt or truncated JPEG" in failure["reason"], failure
    assert "premature end of data segment" in failure["reason"], failure
    status = {row["photo"]: row for row in _rows(out / "status.csv")}
    assert all(status[name]["cover"] == "ok" for name in ("Q0.jpg", "Q1.jpg", "Q2.jpg")), status
    assert all(row["photo"] != "cut.jpg" for row in _rows(out / "cover.csv"))


def _real_jpegs(shared_data) -> list:
    found = sorted((shared_data / "real_quadrats" / "coralscop").glob("*.jpg"))
    found += sorted((shared_data / "coralnet").glob("*.jpg"))
    if not found:
        pytest.skip(f"no real JPEG photos under {shared_data}")
    return found


def test_the_real_photos_still_read_and_their_cut_copies_are_refused(shared_data, tmp_path):
    """Every real JPEG (baseline and progressive) reads whole; the same file cut short is refused."""
    for path in _real_jpegs(shared_data):
        rgb = read_image_rgb(path)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and min(rgb.shape[:2]) >= 512, path
        cut = tmp_path / path.name
        cut.write_bytes(_cut_middle(path.read_bytes()))
        with pytest.raises(ImageReadError, match="corrupt or truncated JPEG"):
            read_image_rgb(cut)
