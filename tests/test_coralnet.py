"""CoralNet interop on CoralNet's own exports (MCR LTER, shared/data/coralnet) and our CSV back."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.formats.coralnet import (
    check_codes,
    human_points,
    read_coralnet_csv,
    read_label_mapping,
    sample_points,
    write_coralnet_csv,
)
from quadratseg.taxonomy import load_taxonomy

HUMAN = "mcr_lter1_fringingreef_pole1-2_qu1_20080415.csv"
MACHINE = "mcr_lter1_fringingreef_pole4-5_qu2_20080415.csv"


def _mapping(tmp_path, rows):
    path = tmp_path / "mapping.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["coralnet", "label"])
        writer.writerows(rows)
    return path


def test_a_coralnet_export_reads_with_machine_rows_recognized(shared_data):
    people = read_coralnet_csv(shared_data / "coralnet" / HUMAN)
    robot = read_coralnet_csv(shared_data / "coralnet" / MACHINE)
    assert len(people) == len(robot) == 200
    kept, left_out = human_points(people + robot)
    assert len(kept) == 200 and left_out == 200  # the classifier's points are not truth
    assert {p.annotator for p in kept} == {"Imported"}
    first = people[0]  # Row 671 is y, Column 217 is x, as CoralNet writes them: that pixel's centre
    assert (first.name, first.x, first.y, first.code) == (HUMAN.replace(".csv", ".jpg"), 217.5, 671.5, "Sand")
    assert robot[0].extra["Machine suggestion 1"] == "CCA"
    codes = {p.code for p in kept}
    assert codes == {"Sand", "CCA", "Porit", "Macro", "Off"}


def test_codes_without_a_mapping_stop_with_close_matches(shared_data, tmp_path):
    taxonomy = load_taxonomy()
    points, _ = human_points(read_coralnet_csv(shared_data / "coralnet" / HUMAN))
    mapping = read_label_mapping(
        _mapping(tmp_path, [["Porites", "Porites"], ["Sand", "substrate"], ["CCA", "substrate"]]),
        taxonomy.classes(),
    )
    with pytest.raises(QuadratsegError, match=r"'Porit' \(close: Porites\)") as error:
        check_codes(points, mapping, HUMAN)
    assert "'Off'" in str(error.value) and "'Macro'" in str(error.value)
    with pytest.raises(QuadratsegError, match="did you mean Porites"):
        read_label_mapping(_mapping(tmp_path, [["Porit", "Poritess"]]), taxonomy.classes())
    with pytest.raises(QuadratsegError, match="does not exist"):
        read_label_mapping(tmp_path / "none.csv", taxonomy.classes())
    with pytest.raises(QuadratsegError, match="not a CoralNet annotation export"):
        bad = tmp_path / "bad.csv"
        bad.write_text("Name,x,y\na.jpg,1,2\n")
        read_coralnet_csv(bad)


def test_our_points_csv_is_read_back_as_coralnet_writes_it(tmp_path):
    points = sample_points((400, 300), 12, "grid")
    assert points.shape == (12, 2) and (points[:, 0] < 400).all() and (points[:, 1] < 300).all()
    assert len(sample_points((500, 500), 50, "grid")) == 49  # 7 x 7: the nearest whole grid
    random = sample_points((400, 300), 50, "random", seed=3)
    assert np.array_equal(random, sample_points((400, 300), 50, "random", seed=3))
    rows = [("a b###c.jpg", float(x), float(y), "Porites") for x, y in points]
    path = write_coralnet_csv(rows, tmp_path / "ours.csv")
    back = read_coralnet_csv(path)
    assert [(p.name, p.x, p.y, p.code) for p in back] == [  # the centres of the pixels holding them
        (n, np.floor(x) + 0.5, np.floor(y) + 0.5, c) for n, x, y, c in rows
    ]
    with pytest.raises(QuadratsegError, match="random or grid"):
        sample_points((10, 10), 3, "spiral")


def test_a_coralnet_point_is_the_pixel_it_names_both_ways(tmp_path):
    """CoralNet's Row and Column are 0-based pixel indices (its annotation design notes): a point is
    read as that pixel's centre (continuous coordinates, pixel k spanning [k, k + 1), as the chain's
    label maps are indexed) and a point is written as the pixel that holds it. Before: read as the
    pixel's corner (half a pixel up and left) and written rounded (x = 10.7, in pixel 10, became
    Column 11: another pixel, on a colony's edge another label)."""
    path = write_coralnet_csv([("a.jpg", 10.7, 5.2, "A"), ("a.jpg", 0.2, 299.9, "B")], tmp_path / "p.csv")
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["Column"], r["Row"]) for r in rows] == [("10", "5"), ("0", "299")]
    assert [(p.x, p.y) for p in read_coralnet_csv(path)] == [(10.5, 5.5), (0.5, 299.5)]
