"""python -m pipeline.calibrate: interval terms fitted on a pipeline.process run over annotated photos,
then read back by pipeline.process --calibration, at the model's level and every coarser one."""

from __future__ import annotations

import csv
import json

import pytest
from test_process import TrueColonies, TrueCorners, TrueGrid, raw_photos  # noqa: F401 (fixture)

from pipeline.calibrate import calibrate
from pipeline.calibration import read_calibration, read_truth_csv
from pipeline.chain import ChainModels
from pipeline.demo_process import true_cover
from pipeline.process import check_options
from pipeline.run import RunConfig, process_folder
from quadratseg.cover import CoverCalibration, reapplied
from quadratseg.cover_table import level_estimates
from quadratseg.errors import QuadratsegError
from quadratseg.taxonomy import load_taxonomy


class EveryThirdMissed(TrueColonies):
    """The true colonies but every third one, as a detector that misses colonies."""

    def predict(self, image):
        return [c for i, c in enumerate(super().predict(image)) if i % 3 != 2]


def write_truth(path, keys, truths, level="finegrained"):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["photo", "label", "percent"])
        for key, t in zip(keys, truths, strict=True):
            for label, value in true_cover(t, level).items():
                if value > 0:
                    writer.writerow([key, label, round(value, 4)])
    return path


def test_terms_fitted_on_a_run_are_read_back_by_the_next_run_at_every_level(raw_photos, tmp_path):  # noqa: F811
    folder, truths, keys, telea = raw_photos

    def models(calibration=None):
        return ChainModels(
            EveryThirdMissed(truths), TrueCorners(truths), TrueGrid(truths), telea, calibration=calibration
        )

    run = tmp_path / "annotated"
    process_folder(folder, run, models(), "fp")
    truth_csv = write_truth(tmp_path / "truth.csv", keys, truths)
    summary = json.loads(calibrate(str(run), str(truth_csv), out=str(tmp_path / "terms.json")))
    assert summary["photos"] == len(truths) and summary["level"] == "finegrained"
    assert set(summary["pairs"]) == {"finegrained", "extended", "main_family", "agnostic"}
    assert summary["pairs"]["agnostic"]["predicted"] == len(truths)  # one "coral" pair per photo
    terms = read_calibration(tmp_path / "terms.json")
    # a third of the colonies missed: the masks' cover is low, and the fitted class term says so
    assert terms.fitted and terms.bias_pooled_pp > 0 and terms.at_level("agnostic").bias_pooled_pp > 0
    # the survey run with the terms: each level's rows carry that level's terms
    survey = tmp_path / "survey"
    process_folder(folder, survey, models(terms), "fp-calibrated")
    rows = [r for r in csv.DictReader((survey / "cover.csv").open()) if r["level"] == "agnostic"]
    record = json.loads(next((survey / "photos").rglob("*.json")).read_text())
    from quadratseg.cover import CoverEstimate

    (expected,) = level_estimates(
        [CoverEstimate(**e) for e in record["cover"]], load_taxonomy(), "finegrained", "agnostic", terms
    )
    row = next(r for r in rows if r["photo"] == record["photo"])
    assert float(row["high"]) == pytest.approx(expected.high) and row["method"].endswith("+calibrated")
    summed = level_estimates(
        [CoverEstimate(**e) for e in record["cover"]], load_taxonomy(), "finegrained", "agnostic"
    )[0]
    assert float(row["high"]) != pytest.approx(summed.high)  # not the members' terms added up
    assert expected == reapplied(expected, terms.at_level("agnostic"))


def test_a_truth_the_run_cannot_match_stops_before_anything_is_written(raw_photos, tmp_path):  # noqa: F811
    folder, truths, keys, telea = raw_photos
    run = tmp_path / "annotated"
    process_folder(
        folder, run, ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea), "fp"
    )
    out = tmp_path / "terms.json"
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,label,percent\nnot_in_the_run.jpg,Porites,3.0\n")
    with pytest.raises(QuadratsegError, match="not in the run"):
        calibrate(str(run), str(bad), out=str(out))
    bad.write_text(f"photo,label,percent\n{keys[0]},Poritez,3.0\n")
    with pytest.raises(QuadratsegError, match="Porites"):  # an unknown label, with its close match
        calibrate(str(run), str(bad), out=str(out))
    bad.write_text(f"photo,label,percent\n{keys[0]},Porites,130\n")
    with pytest.raises(QuadratsegError, match=r"bad.csv:2: percent 130.0 is outside 0..100"):
        read_truth_csv(bad)
    assert not out.exists()
    # a family named in the truth of a genus model is coarser than the model: refused too
    bad.write_text(f"photo,label,percent\n{keys[0]},Poritidae,3.0\n")
    with pytest.raises(QuadratsegError):
        calibrate(str(run), str(bad), out=str(out))
    assert not out.exists()


def test_fitted_terms_and_guessed_terms_together_are_refused_and_a_bad_file_is_named(tmp_path):
    with pytest.raises(QuadratsegError, match="--calibration: either fitted terms"):
        check_options(RunConfig(yolo="y.pt", calibration="terms.json", miss_pp=1.0))
    (tmp_path / "terms.json").write_text('{"not_a_term": 1}')
    with pytest.raises(QuadratsegError, match=r"terms\.json: not interval terms"):
        read_calibration(tmp_path / "terms.json")
    assert read_calibration(CoverCalibration(fitted=True).to_json(tmp_path / "ok.json")).fitted
