"""python -m pipeline.calibrate: interval terms fitted on a pipeline.process run over annotated photos,
then read back by pipeline.process --calibration, at the model's level and every coarser one."""

from __future__ import annotations

import csv
import json

import pytest
from chain_standins import TrueColonies, TrueCorners, TrueGrid

from pipeline.calibrate import calibrate
from pipeline.calibration import read_calibration, read_truth_csv
from pipeline.chain import ChainModels
from pipeline.demo_process import true_cover
from pipeline.process import check_options
from pipeline.run import RunConfig, process_folder
from quadratseg.cover import CoverCalibration, CoverEstimate, reapplied
from quadratseg.cover_table import level_estimates, level_terms_hold
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


def test_terms_fitted_on_a_run_are_read_back_by_the_next_run_at_every_level(raw_photos, tmp_path):
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
    assert summary["labels_without_a_class"] == []
    assert set(summary["pairs"]) == {"finegrained", "extended", "main_family", "agnostic"}
    assert summary["pairs"]["agnostic"]["predicted"] == len(truths)  # one "coral" pair per photo
    terms = read_calibration(tmp_path / "terms.json")
    assert (terms.level, terms.method) == ("finegrained", "instance-confidence")  # checked by the next run
    # a third of the colonies missed: the masks' cover is low, and the fitted class term says so
    assert terms.fitted and terms.bias_pooled_pp > 0 and terms.at_level("agnostic").bias_pooled_pp > 0
    # the survey run with the terms: each level's rows carry that level's terms where they rest on
    # enough pairs (19) to hold 95 %, else their members' terms added up, and the summary says which
    survey = tmp_path / "survey"
    process_folder(folder, survey, models(terms), "fp-calibrated")
    rows = list(csv.DictReader((survey / "cover.csv").open()))
    taxonomy = load_taxonomy()
    own_terms = 0
    for path in (survey / "photos").rglob("*.json"):
        record = json.loads(path.read_text())
        recorded = [CoverEstimate(**e) for e in record["cover"]]
        for level in ("extended", "main_family", "agnostic"):
            fitted = [
                reapplied(e, terms.at_level(level))
                for e in level_estimates(recorded, taxonomy, "finegrained", level)
            ]
            summed = level_estimates(recorded, taxonomy, "finegrained", level)
            for e, fit, add in zip(
                level_estimates(recorded, taxonomy, "finegrained", level, terms), fitted, summed, strict=True
            ):
                row = next(
                    r
                    for r in rows
                    if (r["photo"], r["level"], r["label"]) == (record["photo"], level, e.label)
                )
                held = level_terms_hold(terms.at_level(level), e.pixels > 0)
                assert float(row["high"]) == pytest.approx((fit if held else add).high, abs=1e-3)
                assert float(row["low"]) == pytest.approx((fit if held else add).low, abs=1e-3)
                assert (row["fit"] == "summed") is not held
                own_terms += held
    assert own_terms > 0  # some rows take their level's own terms
    assert "agnostic/predicted" in summary["levels_summed"]  # one 'coral' pair per photo: too few


def test_a_truth_the_run_cannot_match_stops_before_anything_is_written(raw_photos, tmp_path):
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
    (tmp_path / "bad_level.json").write_text('{"fitted": true, "levels": {"agnostic": {"bogus": 1}}}')
    with pytest.raises(QuadratsegError, match="not interval terms"):  # at once, not after the photos
        read_calibration(tmp_path / "bad_level.json")
    (tmp_path / "terms.json").write_text('{"not_a_term": 1}')
    with pytest.raises(QuadratsegError, match=r"terms\.json: not interval terms"):
        read_calibration(tmp_path / "terms.json")
    assert read_calibration(CoverCalibration(fitted=True).to_json(tmp_path / "ok.json")).fitted


def test_terms_made_for_another_chain_are_refused_before_any_photo(raw_photos, tmp_path):
    folder, truths, _keys, telea = raw_photos
    for terms, why in (
        (CoverCalibration(fitted=True, level="main_family"), "fitted at the main_family level"),
        (CoverCalibration(fitted=True, level="finegrained", method="vote-share-blocks"), "vote-share-blocks"),
    ):
        models = ChainModels(
            TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea, calibration=terms
        )
        with pytest.raises(QuadratsegError, match=why):
            process_folder(folder, tmp_path / "out", models, "fp")
        assert not (tmp_path / "out" / "photos").exists() or not any((tmp_path / "out" / "photos").iterdir())


class ThresholdedColonies(TrueColonies):
    """The true colonies from a predictor that states its colony threshold, as SegPredictor does."""

    conf, conf_source = 0.13, "model card"


def test_terms_record_the_colony_threshold_and_a_run_at_another_is_refused(raw_photos, tmp_path):
    """The colonies a model keeps depend on its threshold, and the interval terms on the colonies:
    terms fitted on a run remember its threshold (run.json), and a run keeping colonies above another
    one is refused before any photo; the same threshold goes through."""
    folder, truths, keys, telea = raw_photos

    def models(calibration=None, conf=0.13):
        segment = ThresholdedColonies(truths)
        segment.conf = conf
        return ChainModels(segment, TrueCorners(truths), TrueGrid(truths), telea, calibration=calibration)

    run = tmp_path / "annotated"
    process_folder(folder, run, models(), "fp")
    assert json.loads((run / "run.json").read_text())["colony_conf"] == {"conf": 0.13, "source": "model card"}
    truth_csv = write_truth(tmp_path / "truth.csv", keys, truths)
    calibrate(str(run), str(truth_csv), out=str(tmp_path / "terms.json"))
    terms = read_calibration(tmp_path / "terms.json")
    assert terms.colony_conf == 0.13
    why = r"kept above confidence 0\.13, this run keeps those above 0\.25"
    with pytest.raises(QuadratsegError, match=why):
        process_folder(folder, tmp_path / "other", models(terms, conf=0.25), "fp")
    assert not (tmp_path / "other" / "photos").exists() or not any((tmp_path / "other" / "photos").iterdir())
    process_folder(folder, tmp_path / "same", models(terms), "fp2")
    assert (tmp_path / "same" / "cover.csv").is_file()


def test_a_spreadsheets_truth_table_reads_and_a_short_row_is_named(tmp_path):
    table = tmp_path / "truth.csv"
    # Excel's UTF-8 CSV: a byte-order mark, capitalised headers; a photo with no coral has no label
    table.write_bytes(
        "\ufeffPhoto,Label,Percent\nq1.jpg,Porites,2.5\nq1.jpg,Porites,0.5\nq2.jpg,,\n".encode()
    )
    assert read_truth_csv(table) == {"q1.jpg": {"Porites": 3.0}, "q2.jpg": {}}
    table.write_text("photo,label,percent\nq1.jpg,Porites\n")
    with pytest.raises(QuadratsegError, match=r"truth.csv:2: percent None is not a number"):
        read_truth_csv(table)


def test_a_photo_listed_under_its_key_and_its_file_name_is_refused(raw_photos, tmp_path):
    folder, truths, keys, telea = raw_photos
    run = tmp_path / "annotated"
    models = ChainModels(TrueColonies(truths), TrueCorners(truths), TrueGrid(truths), telea)
    process_folder(folder, run, models, "fp")
    key = next(k for k in keys if "/" in k)
    table = tmp_path / "truth.csv"
    table.write_text(f"photo,label,percent\n{key},Porites,2.0\n{key.rsplit('/', 1)[1]},Porites,1.0\n")
    with pytest.raises(QuadratsegError, match="under two names"):
        calibrate(str(run), str(table), out=str(tmp_path / "terms.json"))


class NoModelRuns(EveryThirdMissed):
    """A segmenter that must not be called: the photos' records are reused."""

    def predict(self, image):
        raise AssertionError("a model ran on a photo whose record was current")


def test_new_terms_rebuild_the_tables_from_the_records_without_running_a_model(raw_photos, tmp_path):
    """The interval terms are table options: a run folder processed again with new terms (fitted by
    pipeline.calibrate) rebuilds cover.csv from its photo records, no model called, and the tables
    are those of a fresh run with the terms, to the byte; the fingerprint leaves the terms out."""
    from pipeline.run import run_fingerprint

    folder, truths, keys, telea = raw_photos
    run = tmp_path / "run"
    process_folder(
        folder, run, ChainModels(EveryThirdMissed(truths), TrueCorners(truths), TrueGrid(truths), telea), "fp"
    )
    before = (run / "cover.csv").read_text()
    calibrate(
        str(run), str(write_truth(tmp_path / "truth.csv", keys, truths)), out=str(tmp_path / "terms.json")
    )
    terms = read_calibration(tmp_path / "terms.json")
    summary = process_folder(
        folder,
        run,
        ChainModels(NoModelRuns(truths), TrueCorners(truths), TrueGrid(truths), telea, calibration=terms),
        "fp",
    )
    fresh = tmp_path / "fresh"
    process_folder(
        folder,
        fresh,
        ChainModels(
            EveryThirdMissed(truths), TrueCorners(truths), TrueGrid(truths), telea, calibration=terms
        ),
        "fp-fresh",
    )
    rebuilt = (run / "cover.csv").read_text()
    assert summary["failed"] == 0 and rebuilt != before  # the class term moved the intervals
    assert rebuilt == (fresh / "cover.csv").read_text()
    assert (run / "cover_summary.csv").read_text() == (fresh / "cover_summary.csv").read_text()
    # the fresh run's tables at the model's level are its records' own estimates (made with the terms)
    rows = {
        (r["photo"], r["label"]): r
        for r in csv.DictReader((fresh / "cover.csv").open())
        if r["level"] == "finegrained"
    }
    for path in (fresh / "photos").rglob("*.json"):
        record = json.loads(path.read_text())
        for e in record["cover"]:
            row = rows[(record["photo"], e["label"])]
            assert (float(row["low"]), float(row["high"])) == (e["low"], e["high"])
    # which terms made the tables is in run.json, as the fingerprint no longer says it
    made = [json.loads((folder_ / "run.json").read_text())["interval_terms"] for folder_ in (run, fresh)]
    assert (
        made[0] == made[1] == summary["interval_terms"] and made[0]["fitted"] and len(made[0]["sha256"]) == 64
    )
    other = CoverCalibration(fitted=True, bias_pooled_pp=3.0).to_json(tmp_path / "other.json")
    assert run_fingerprint(RunConfig(calibration=str(tmp_path / "terms.json"))) == run_fingerprint(
        RunConfig(calibration=str(other))
    )
    assert run_fingerprint(RunConfig(miss_pp=2.0, boundary_px=1.0)) == run_fingerprint(RunConfig())
