"""Few-shot fine-tuning of a synthetic frame model on a programme's annotated photos (leave-one-out)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from grid_pose_detection.few_shot import few_shot, training_photos
from quadratseg.errors import QuadratsegError


def _three_photos(shared_data, tmp_path):
    """The first three CoralSCoP photos and their corners.json in tmp_path/photos: (folder, names,
    the shared corners.json)."""
    source = shared_data / "real_quadrats" / "coralscop"
    corners = json.loads((source / "corners.json").read_text())
    names = sorted(corners["photos"])[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in names:
        shutil.copy(source / name, folder / name)
    (folder / "corners.json").write_text(json.dumps({"photos": {n: corners["photos"][n] for n in names}}))
    return folder, names, corners


def test_the_held_out_photo_is_never_among_the_training_photos():
    names = [f"p{i}.jpg" for i in range(7)]
    for held in names:
        sets = [training_photos(names, held, k, seed=0) for k in (0, 1, 3, 5, 6)]
        assert all(held not in s for s in sets)
        assert [len(s) for s in sets] == [0, 1, 3, 5, 6]
        assert all(sets[i] == sets[i + 1][: len(sets[i])] for i in range(len(sets) - 1))  # nested
    with pytest.raises(QuadratsegError, match="K = 7 needs 7 photos"):
        training_photos(names, names[0], 7, seed=0)


@pytest.mark.slow
def test_few_shot_fine_tunes_on_other_photos_and_scores_the_held_out_one(
    tiny_corner_model, shared_data, tmp_path
):
    """K = 0 scores the base model, K = 1 fine-tunes it (one epoch) on one other photo only; the held-out
    photo's row is in the curve and in neither training layout."""
    folder, names, _ = _three_photos(shared_data, tmp_path)
    from quadratseg.keypoints import corner_template_xy, save_template
    from quadratseg.model_card import read_model_card, write_model_card

    tiny, _ = tiny_corner_model
    base = tmp_path / "base" / "best.pt"  # a copy whose card names a template, as a trained model's does
    base.parent.mkdir()
    shutil.copy(tiny, base)
    save_template(corner_template_xy(), base.parent / "kp_template.npy")
    write_model_card(base, {**read_model_card(tiny), "task": "gridcorners", "template": "kp_template.npy"})
    result = json.loads(
        few_shot(
            str(base),
            str(tmp_path / "out"),
            photos=str(folder),
            ks=[0, 1],
            epochs=1,
            imgsz=64,
            held_out=[names[0]],
        )
    )
    assert set(result["curve"]) == {"0", "1"}
    for k in ("0", "1"):
        curve = result["curve"][k]
        assert curve["photos"] == 1 and [r["photo"] for r in curve["rows"]] == [names[0]]
        assert curve["rows"][0]["found"] or curve["rows"][0]["reason"]
    layout = tmp_path / "out" / "k1" / "held_00" / "layout"
    assert len(list((layout / "images" / "train").iterdir())) == 1
    card_path = next((tmp_path / "out" / "k1").rglob("model_card.json"))
    card = json.loads(card_path.read_text())
    assert len(card["fine_tuned_on"]) == 1 and names[0] not in card["fine_tuned_on"]
    assert card["template"] and (card_path.parent / card["template"]).is_file()  # what the predictor reads
    assert json.loads((tmp_path / "out" / "few_shot.json").read_text()) == result


def test_held_out_names_with_hashes_from_the_command_line(shared_data, monkeypatch, tmp_path):
    """``--held-out`` takes the real photo names as typed (they hold ``###``, which fire's literal
    parser reads as the start of a comment and cut to ``AUSTRALES_AUS_RAI1``); two names comma-separated
    hold out both. The model is a stand-in answering the hand corners (K = 0: no training); a name not
    in corners.json is still refused with the names it knows."""
    from pose_standins import PointsModel

    import quadratseg.yolo_train
    from quadratseg.cli import run

    folder, names, corners = _three_photos(shared_data, tmp_path)
    assert all("###" in n for n in names)
    answers = [np.asarray(corners["photos"][n]["corners"]) for n in names]
    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: PointsModel(list(answers)))
    base = tmp_path / "stand-in.pt"
    command = [str(base), str(tmp_path / "out"), "--photos", str(folder), "--ks", "0"]
    run(few_shot, command=[*command, "--held-out", names[1]])
    result = json.loads((tmp_path / "out" / "few_shot.json").read_text())
    assert [r["photo"] for r in result["curve"]["0"]["rows"]] == [names[1]]
    run(few_shot, command=[*command, "--held-out", f"{names[0]},{names[2]}"])
    result = json.loads((tmp_path / "out" / "few_shot.json").read_text())
    assert [r["photo"] for r in result["curve"]["0"]["rows"]] == [names[0], names[2]]
    with pytest.raises(SystemExit) as exit_info:
        run(few_shot, command=[*command, "--held-out", "AUSTRALES_AUS_RAI1###nothing.jpg"])
    assert exit_info.value.code == 2


def test_a_curve_that_cannot_be_made_is_refused_before_any_work(shared_data, monkeypatch, tmp_path):
    """K larger than the photos allow, or a photo of corners.json missing from the folder: refused at
    once with the reason, no output folder. Before, K = 0 was scored for every photo (and with K = 1, 3,
    5, 7 every fine-tuning of 1, 3 and 5 run) and then everything was lost on K = 7 or the missing photo."""
    import quadratseg.yolo_train

    built = []
    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: built.append(weights))
    folder, names, _ = _three_photos(shared_data, tmp_path)
    with pytest.raises(QuadratsegError, match="K = 3 needs 3 photos besides the held-out one"):
        few_shot("stand-in.pt", str(tmp_path / "out"), photos=str(folder), ks="0,3")
    (folder / names[2]).unlink()
    with pytest.raises(QuadratsegError, match="does not exist") as error:
        few_shot("stand-in.pt", str(tmp_path / "out"), photos=str(folder), ks="0")
    assert names[2] in str(error.value)
    assert built == [] and not (tmp_path / "out").exists()


def test_the_layout_of_a_photo_stored_turned_holds_its_corners_upright(shared_data, tmp_path):
    """write_photo_layout writes the photo upright (EXIF applied): its labels must be the hand corners
    turned with it (corners.json gives the stored pixels). Before, the labels kept the stored frame:
    7-22 px off the frame on a 1024 px photo stored turned by 90 degrees."""
    from PIL import Image

    from grid_pose_detection.few_shot import write_photo_layout

    folder, names, corners = _three_photos(shared_data, tmp_path)
    name = names[0]
    with Image.open(folder / name) as image:  # stored turned 90 degrees counter-clockwise, EXIF 6
        exif = Image.Exif()
        exif[0x0112] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(folder / name, quality=95, exif=exif.tobytes())
    upright = np.asarray(corners["photos"][name]["corners"], float)
    stored = np.c_[upright[:, 1], 1024 - upright[:, 0]]
    doc = {"photos": {name: {"corners": stored.tolist(), "width": 1024, "height": 1024}}}
    (folder / "corners.json").write_text(json.dumps(doc))
    from grid_pose_detection.evaluate_real import load_hand_corners

    data = write_photo_layout(folder, [name], load_hand_corners(folder), tmp_path / "layout")
    label = (data.parent / "labels" / "train" / "photo_00.txt").read_text().split("\n")
    points = np.array([[float(v) for v in line.split()[5:7]] for line in label if line.strip()]) * 1024
    assert np.abs(points - upright).max() < 0.01, points
