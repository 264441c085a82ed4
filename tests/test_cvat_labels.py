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


@pytest.mark.shared_data
def test_skeleton_edges_read_the_server_drawing_by_sublabel_id(shared_data):
    """CVAT's REST API names a skeleton's nodes by sublabel database id (``data-label-id``), not by
    name: its real label dump, and the same drawing after a node was deleted in the skeleton editor
    (node ids no longer in sublabel order)."""
    import json
    import re

    from quadratseg.formats.cvat_labels import label_from_raw, skeleton_edges

    raw = json.loads((shared_data / "cvat" / "rest_dumps" / "labels.json").read_text())["results"]
    skeleton = next(r for r in raw if r["type"] == "skeleton")
    spec = label_from_raw(skeleton)
    ids = {s.id: i for i, s in enumerate(spec.sublabels)}
    assert None not in ids and len(ids) == len(spec.sublabels) >= 3
    nodes = dict(re.findall(r'data-node-id="(\d+)" data-label-id="(\d+)"', skeleton["svg"]))
    lines = re.findall(r'data-node-from="(\d+)"[^>]*data-node-to="(\d+)"', skeleton["svg"])
    expected = [(ids[int(nodes[a])], ids[int(nodes[b])]) for a, b in lines]
    assert expected and skeleton_edges(spec) == expected
    # the editor renumbered the nodes: node n+10 is the same sublabel as before, by its id
    renumbered = re.sub(
        r'data-node-(id|from|to)="(\d+)"', lambda m: f'data-node-{m[1]}="{int(m[2]) + 10}"', skeleton["svg"]
    )
    spec.svg = renumbered
    assert skeleton_edges(spec) == expected


@pytest.mark.parametrize(
    ("project", "real"), [("corners", "corner"), ("grid", "grid"), ("segmentation", "coral")]
)
def test_the_label_config_command_prints_what_criobe_projects_hold(configs, project, real):
    """The Raw JSON a user pastes into CVAT, compared as raw JSON with CRIOBE's own exports."""
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-m", "data_engineering.label_config", project],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ours, theirs = json.loads(result.stdout), json.loads(configs[real].read_text())

    def shape(labels):
        return [
            (
                label["name"],
                label.get("type"),
                sorted((a["name"], a["input_type"], tuple(a["values"])) for a in label.get("attributes", [])),
                [(s["name"], s.get("type")) for s in label.get("sublabels", [])],
            )
            for label in labels
        ]

    assert shape(ours) == shape(theirs) and len(ours) >= 1


def test_the_label_config_command_refuses_an_unknown_project():
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run(
        [sys.executable, "-m", "data_engineering.label_config", "corals"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "unknown project 'corals': choose one of corners, grid, segmentation" in result.stderr
