"""Site, year and quadrat from photo names."""

from __future__ import annotations

import pytest

from quadratseg.photo_meta import parse_photo_name


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("SynthNorth_2019_000", ("SynthNorth", "2019", "000")),
        (
            "AUSTRALES_AUS_RAI1###20M###20190504_UTP_QUADRAT_AUSRAI1_20M_10",
            ("AUSTRALES_AUS_RAI1", "2019", "10"),
        ),
        ("mcr_lter1_fringingreef_pole1-2_qu1_20080415", ("", "", "")),
    ],
)
def test_site_year_and_quadrat_from_photo_names(stem, expected):
    assert tuple(parse_photo_name(stem).values()) == expected


def _places(tmp_path, csv_text, keys):
    from quadratseg.photo_meta import photo_places, read_photo_metadata

    path = tmp_path / "meta.csv"
    path.write_text(csv_text, encoding="utf-8")
    return photo_places(keys, read_photo_metadata(path))


def test_a_metadata_row_with_folders_never_places_another_photo_of_the_same_name(tmp_path):
    """The CSV lists Haapiti/2019/Q1.jpg only: Tiahura/2019/Q1.jpg keeps its own folders (before:
    Haapiti, silently, through the file-name fallback)."""
    keys = ["Tiahura/2019/Q1.jpg", "Haapiti/2019/Q1.jpg"]
    places, notes = _places(tmp_path, "photo,site,year,quadrat\nHaapiti/2019/Q1.jpg,Haapiti,2018,Q9\n", keys)
    assert places["Tiahura/2019/Q1.jpg"] == {"site": "Tiahura", "year": "2019", "quadrat": "Q1"}
    assert places["Haapiti/2019/Q1.jpg"] == {"site": "Haapiti", "year": "2018", "quadrat": "Q9"}
    # a row without folders names a file: it places the one photo of that name, never two
    places, notes = _places(tmp_path, "photo,site,year,quadrat\nQ1.jpg,Temae,2018,7\n", keys)
    assert places["Tiahura/2019/Q1.jpg"]["site"] == "Tiahura"
    assert places["Haapiti/2019/Q1.jpg"]["site"] == "Haapiti"
    assert notes == [
        "metadata row Q1.jpg matches 2 photos (Haapiti/2019/Q1.jpg, Tiahura/2019/Q1.jpg): not used"
    ]
    places, _ = _places(tmp_path, "photo,site,year,quadrat\nQ1.jpg,Temae,2018,7\n", ["Tiahura/2019/Q1.jpg"])
    assert places["Tiahura/2019/Q1.jpg"] == {"site": "Temae", "year": "2018", "quadrat": "7"}


@pytest.mark.parametrize(
    "cell",
    ["Tiahura\\2019\\Q1.jpg", "./Tiahura/2019/Q1.jpg", "Tiahura/2019/Q1", "images/Tiahura/2019/Q1.jpg"],
)
def test_metadata_keys_are_normalised_before_matching(tmp_path, cell):
    """Windows separators, ./, a key without its extension and the survey folder's own name in front
    all find the photo (before: the row matched nothing and was dropped silently)."""
    places, notes = _places(
        tmp_path,
        f"photo,site,year,quadrat\n{cell},Temae,2018,T7\n",
        ["Tiahura/2019/Q1.jpg", "Tiahura/2019/Q2.jpg"],
    )
    assert places["Tiahura/2019/Q1.jpg"] == {"site": "Temae", "year": "2018", "quadrat": "T7"}
    assert places["Tiahura/2019/Q2.jpg"] == {"site": "Tiahura", "year": "2019", "quadrat": "Q2"}
    assert notes == []


def test_unused_metadata_rows_are_named_and_duplicates_refused(tmp_path):
    from quadratseg.errors import QuadratsegError

    _, notes = _places(
        tmp_path,
        "photo,site,year,quadrat\nTiahura/2019/Q1.jpg,A,2019,1\nQ9.jpg,B,2020,2\n",
        ["Tiahura/2019/Q1.jpg"],
    )
    assert notes == ["metadata row Q9.jpg matches no photo: not used"]
    with pytest.raises(QuadratsegError, match=r"lists Tiahura/2019/Q1.jpg twice \(rows 2 and 3\)"):
        _places(
            tmp_path,
            "photo,site,year,quadrat\nTiahura/2019/Q1.jpg,A,2019,1\nTiahura\\2019\\Q1.jpg,B,2020,2\n",
            ["Tiahura/2019/Q1.jpg"],
        )


@pytest.mark.parametrize(
    ("key", "expected", "note"),
    [
        ("images/2019/Q1.jpg", ("", "2019", "Q1"), ""),  # a generic folder is no site
        ("Tiahura/images/2019/Q1.jpg", ("Tiahura", "2019", "Q1"), ""),
        ("Tiahura/2019/T1/Q1.jpg", ("Tiahura", "2019", "T1/Q1"), ""),  # transects kept apart
        ("Tiahura/2019/T2/Q1.jpg", ("Tiahura", "2019", "T2/Q1"), ""),
        ("Tiahura/2019/Tiahura_2019_05.jpg", ("Tiahura", "2019", "05"), ""),  # the name's quadrat
        ("2020/MooreaE2B_2020_05.jpg", ("MooreaE2B", "2020", "05"), ""),  # the name whole
        (
            "Tiahura/2019/Tiahura_2020_05.jpg",
            ("Tiahura", "2019", "05"),
            "Tiahura/2019/Tiahura_2020_05.jpg: its folders say Tiahura 2019, its name Tiahura 2020 "
            "(the folders are used)",
        ),
        ("TIAHURA/2019/TIAHURA###10m###20190412_IMG_0042_3.jpg", ("TIAHURA", "2019", "3"), ""),
        ("Tiahura\\2019\\Q1.jpg", ("Tiahura", "2019", "Q1"), ""),
    ],
)
def test_folders_and_name_each_taken_whole(key, expected, note):
    """Before: images/ became a site, the name's quadrat was lost under a year folder, transects T1
    and T2 both gave quadrat Q1, and a folder year 2019 against a name year 2020 passed silently."""
    from quadratseg.photo_meta import photo_places

    places, notes = photo_places([key])
    assert tuple(places[key].values()) == expected
    assert notes == ([note] if note else [])


def test_a_metadata_date_must_be_a_day_of_its_row_year(tmp_path):
    """The optional ``date`` column dates a survey to the day (tracking's rates count the days): a cell
    that is no ISO day, or a day of another year than the row's, is refused with its row, before any
    photo is read; an empty cell leaves the date to the name or the year."""
    from quadratseg.errors import QuadratsegError
    from quadratseg.photo_meta import photo_date, read_photo_metadata

    path = tmp_path / "meta.csv"
    path.write_text(
        "photo,site,year,quadrat,date\nQ1.jpg,Temae,2019,1,2019-03-15\nQ2.jpg,Temae,2019,2,\n",
        encoding="utf-8",
    )
    table = read_photo_metadata(path)
    assert photo_date("Q1.jpg", table["Q1.jpg"]) == "2019-03-15"
    assert photo_date("Q2.jpg", table["Q2.jpg"]) == "2019"
    for cell in ("15/03/2019", "2020-03-15", "2019-02-30"):
        path.write_text(f"photo,site,year,quadrat,date\nQ1.jpg,Temae,2019,1,{cell}\n", encoding="utf-8")
        with pytest.raises(QuadratsegError, match=r"row 2.*date") as error:
            read_photo_metadata(path)
        assert cell in str(error.value)
