import json

import pytest

from quadratseg.errors import QuadratsegError, UnknownLabelError
from quadratseg.taxonomy import LEVELS, load_taxonomy, parse_taxonomy_rows


def test_levels_have_the_documented_sizes():
    tax = load_taxonomy()
    assert [len(tax.classes(level)) for level in LEVELS] == [16, 10, 7, 1]
    assert tax.classes("agnostic") == ["coral"]


@pytest.mark.shared_data
def test_finegrained_classes_equal_the_criobe_label_config(shared_data):
    raw = json.loads((shared_data / "criobe_label_configs" / "finegained_seg_example.json").read_text())
    tax = load_taxonomy()
    assert tax.classes("finegrained") == sorted(label["name"] for label in raw)
    assert {label["name"]: label["color"] for label in raw} == {n: tax.color(n) for n in tax.classes()}


def test_mapping_chain_is_consistent():
    tax = load_taxonomy()
    to_ext = tax.mapping("extended")
    ext_to_family = tax.mapping("main_family", source="extended")
    for genus, family in tax.mapping("main_family").items():
        assert ext_to_family[to_ext[genus]] == family
    assert tax.map_label("Goniastrea", "extended") == "Merulinidae"
    assert tax.map_labels(["Acropora", "Porites"], "agnostic") == ["coral", "coral"]


def test_unknown_labels_are_listed_with_close_matches():
    tax = load_taxonomy()
    with pytest.raises(UnknownLabelError) as info:
        tax.map_labels(["Acropra", "Porites", "Seagrass"], "main_family")
    assert set(info.value.unknown) == {"Acropra", "Seagrass"}
    assert info.value.unknown["Acropra"][0] == "Acropora"
    assert "did you mean 'Acropora'" in str(info.value)


def test_aliases_map_user_labels():
    tax = load_taxonomy()
    assert tax.map_labels(["Pavona"], "finegrained", aliases={"Pavona": "Pavona/Leptoseris"}) == [
        "Pavona/Leptoseris"
    ]


def test_bad_levels_and_tables():
    tax = load_taxonomy()
    with pytest.raises(QuadratsegError, match="did you mean 'extended'"):
        tax.classes("extnded")
    with pytest.raises(QuadratsegError, match="finer level"):
        tax.mapping("finegrained", source="main_family")
    rows = [
        {"finegrained": "A", "extended": "X", "main_family": "F", "agnostic": "coral"},
        {"finegrained": "B", "extended": "X", "main_family": "G", "agnostic": "coral"},
    ]
    with pytest.raises(QuadratsegError, match="two main_family parents"):
        parse_taxonomy_rows(rows, "t.csv")
    with pytest.raises(QuadratsegError, match="lacks the column"):
        parse_taxonomy_rows([{"finegrained": "A"}], "t.csv")
    with pytest.raises(QuadratsegError, match="does not exist"):
        load_taxonomy("/nonexistent/table.csv")
