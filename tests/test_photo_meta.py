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
