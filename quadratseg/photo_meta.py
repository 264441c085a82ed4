"""Site, year and quadrat of a photo, from its file name.

Examples:
    >>> parse_photo_name("SynthNorth_2019_000")["site"]
    'SynthNorth'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Photo names: the synthetic/CRIOBE "site_year_quadrat" and CRIOBE's "SITE###DEPTH###YYYYMMDD_..._N".
NAME_PATTERNS = (
    r"^(?P<site>[^#]+?)###[^#]*###(?P<year>(?:19|20)\d{2})\d{4}_.*?_(?P<quadrat>\d+)$",
    r"^(?P<site>.+?)_(?P<year>(?:19|20)\d{2})_(?P<quadrat>[^_]+)$",
)


def parse_photo_name(stem: str, patterns: Sequence[str] = NAME_PATTERNS) -> dict[str, str]:
    """site, year and quadrat from a photo's file stem by the first matching pattern ("" if none).

    Examples:
        >>> parse_photo_name("SynthNorth_2019_000")
        {'site': 'SynthNorth', 'year': '2019', 'quadrat': '000'}
    """
    for pattern in patterns:
        match = re.match(pattern, stem)
        if match:
            found = match.groupdict()
            return {key: found.get(key) or "" for key in ("site", "year", "quadrat")}
    return {"site": "", "year": "", "quadrat": ""}
