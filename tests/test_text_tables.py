"""Every table a user hands the project (truth cover, photo metadata, taxonomy, CoralNet points,
the CoralNet and TagLab class mappings) is read through one reader: a file saved by a spreadsheet in
its local code page, a missing file or a folder is refused with the file, the byte and the fix,
never a traceback."""

from __future__ import annotations

from functools import partial

import pytest

from data_engineering.taglab_import import read_class_mapping
from pipeline.calibration import read_truth_csv
from quadratseg.errors import QuadratsegError
from quadratseg.formats.coralnet import read_coralnet_csv, read_label_mapping
from quadratseg.photo_meta import read_photo_metadata
from quadratseg.taxonomy import load_taxonomy

# each reader with a table it would read, whose one non-ASCII letter (é) a Latin-1 save makes 0xe9
READERS = {
    "truth": (read_truth_csv, "photo,label,percent\nrécif_q1.jpg,Porites,2.5\n"),
    "metadata": (read_photo_metadata, "photo,site,year,quadrat\nq1.jpg,Récif,2024,1\n"),
    "taxonomy": (
        load_taxonomy,
        "finegrained,extended,main_family,agnostic\nPorités,Poritidae,Poritidae,Coral\n",
    ),
    "coralnet": (read_coralnet_csv, "Name,Row,Column,Label\nrécif.jpg,10,20,Porites\n"),
    "coralnet label mapping": (
        partial(read_label_mapping, known_labels=["Porites"]),
        "coralnet,label\nPorités massive,Porites\n",
    ),
    "taglab class mapping": (read_class_mapping, "taglab,label\nPorités,Porites\n"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_latin_1_table_is_refused_with_the_byte_and_the_fix(tmp_path, reader):
    read, text = READERS[reader]
    table = tmp_path / f"{reader.replace(' ', '_')}.csv"
    table.write_bytes(text.encode("latin-1"))
    with pytest.raises(QuadratsegError) as error:
        read(table)
    message = str(error.value)
    assert str(table) in message and "0xe9" in message and "UTF-8" in message, message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_missing_table_or_a_folder_is_named(tmp_path, reader):
    read, _ = READERS[reader]
    for path, why in ((tmp_path / "nowhere.csv", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(QuadratsegError) as error:
            read(path)
        assert str(path) in str(error.value) and why in str(error.value), str(error.value)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_spreadsheets_utf_8_table_with_its_byte_order_mark_reads(tmp_path, reader):
    read, text = READERS[reader]
    table = tmp_path / f"{reader.replace(' ', '_')}.csv"
    table.write_bytes(text.encode("utf-8-sig"))
    assert read(table)
