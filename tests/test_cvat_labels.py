import json

import pytest

from quadratseg.errors import CvatFormatError
from quadratseg.formats.cvat_labels import label_to_raw, labels_from_raw_config, labels_to_raw_config
from quadratseg.labelsets import coral_labels, corner_labels, grid_labels

pytestmark = pytest.mark.shared_data


@pytest.fixture
def configs(shared_data):
    folder = shared_data / "criobe_label_configs"
    return {
        "corner": folder / "corner_annotation_example.json",
        "grid": folder / "grid_annotation_example.json",
        "coral": folder / "finegained_seg_example.json",
    }


def test_real_criobe_configs_parse(configs):
    (corner,) = labels_from_raw_config(configs["corner"])
    assert corner.type == "skeleton" and [s.name for s in corner.sublabels] == ["1", "2", "3", "4"]
    (grid,) = labels_from_raw_config(configs["grid"])
    assert grid.name == "grid" and [s.name for s in grid.sublabels] == [str(i) for i in range(1, 118)]
    corals = labels_from_raw_config(configs["coral"])
    assert len(corals) == 16 and all(c.type == "polygon" for c in corals)
    conf = corals[0].attribute("confidence")
    assert conf.input_type == "number" and conf.values == ["0", "100", "1"]


def _shape(labels):
    return [
        (
            lab.name,
            lab.type,
            [s.name for s in lab.sublabels],
            [(a.name, a.input_type, a.values) for a in lab.attributes],
        )
        for lab in labels
    ]


def test_project_labelsets_equal_the_real_configs(configs):
    assert _shape(corner_labels()) == _shape(labels_from_raw_config(configs["corner"]))
    assert _shape(grid_labels()) == _shape(labels_from_raw_config(configs["grid"]))
    assert _shape(coral_labels()) == _shape(labels_from_raw_config(configs["coral"]))


def test_raw_round_trip(configs):
    for path in configs.values():
        raw = json.loads(path.read_text())
        again = labels_to_raw_config(labels_from_raw_config(raw))
        assert _shape(labels_from_raw_config(again)) == _shape(labels_from_raw_config(raw))
        for original, written in zip(raw, again, strict=True):
            assert written["name"] == original["name"] and written.get("svg", "") == original.get("svg", "")


@pytest.mark.parametrize(
    "raw, message",
    [
        ([{"type": "polygon"}], "'name'"),
        ([{"name": "a", "type": "hexagon"}], "type 'hexagon'"),
        ([{"name": "s", "type": "skeleton"}], "no sublabels"),
        ([{"name": "a"}, {"name": "a"}], "used twice"),
        ({"name": "a"}, "JSON list"),
        ("[not json", "not valid JSON"),
    ],
)
def test_bad_label_configs(raw, message):
    with pytest.raises(CvatFormatError, match=message):
        labels_from_raw_config(raw)


def test_skeleton_raw_has_svg_and_sublabels():
    raw = label_to_raw(corner_labels()[0])
    assert raw["type"] == "skeleton" and len(raw["sublabels"]) == 4 and 'data-label-name="4"' in raw["svg"]
