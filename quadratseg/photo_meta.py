"""Site, year and quadrat of a photo: from a metadata CSV, else its folders, else its file name.

A photo's *key* is its path relative to the survey folder (``Tiahura/2019/Q1.jpg``). Each field
takes the first source that has it (:func:`photo_place`):

1. a metadata table (:func:`read_photo_metadata`: a CSV with columns ``photo`` or ``key``,
   ``site``, ``year``, ``quadrat``), matched by key, else by file name when that name is unique;
2. the folders of the key: ``site/year/photo.jpg`` (a folder that is a year, 1900-2099, and the
   folder above it as the site; the quadrat is then the file stem);
3. the file name (:data:`NAME_PATTERNS`): ``site_year_quadrat`` and CRIOBE's
   ``SITE###DEPTH###YYYYMMDD_..._N``.

Examples:
    >>> parse_photo_name("SynthNorth_2019_000")["site"]
    'SynthNorth'
    >>> photo_place("Tiahura/2019/Q1.jpg")
    {'site': 'Tiahura', 'year': '2019', 'quadrat': 'Q1'}
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from quadratseg.errors import QuadratsegError

PLACE_FIELDS = ("site", "year", "quadrat")
# Photo names: the synthetic/CRIOBE "site_year_quadrat" and CRIOBE's "SITE###DEPTH###YYYYMMDD_..._N".
NAME_PATTERNS = (
    r"^(?P<site>[^#]+?)###[^#]*###(?P<year>(?:19|20)\d{2})\d{4}_.*?_(?P<quadrat>\d+)$",
    r"^(?P<site>.+?)_(?P<year>(?:19|20)\d{2})_(?P<quadrat>[^_]+)$",
)
YEAR_FOLDER = re.compile(r"^(?:19|20)\d{2}$")

PhotoTable = Mapping[str, Mapping[str, str]]  # key or file name -> site, year, quadrat


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
            return {key: found.get(key) or "" for key in PLACE_FIELDS}
    return {"site": "", "year": "", "quadrat": ""}


def parse_photo_folders(key: str) -> dict[str, str]:
    """site, year and quadrat from the folders of a relative key ``.../site/year/photo.jpg``.

    The last folder that is a year gives the year, the folder above it the site, and the file
    stem the quadrat; a key without a year folder gives nothing ("" everywhere).

    Examples:
        >>> parse_photo_folders("survey/Tiahura/2019/Q1.jpg")
        {'site': 'Tiahura', 'year': '2019', 'quadrat': 'Q1'}
        >>> parse_photo_folders("Tiahura/Q1.jpg")
        {'site': '', 'year': '', 'quadrat': ''}
    """
    path = PurePosixPath(key.replace("\\", "/"))
    folders = list(path.parts[:-1])
    years = [k for k, part in enumerate(folders) if YEAR_FOLDER.match(part)]
    if not years:
        return {"site": "", "year": "", "quadrat": ""}
    k = years[-1]
    return {"site": folders[k - 1] if k > 0 else "", "year": folders[k], "quadrat": path.stem}


def read_photo_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    """A metadata CSV as a table: key (and, when unique, file name) -> site, year, quadrat.

    Columns: ``photo`` or ``key`` (the photo's path relative to the survey folder, or its file
    name), ``site``, ``year``, ``quadrat`` (a missing column is an error; empty cells are allowed).

    Raises:
        QuadratsegError: the file is missing, or lacks a photo column or site, year and quadrat.
    """
    source = Path(path)
    if not source.is_file():
        raise QuadratsegError(f"metadata file {source} does not exist")
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        photo_column = columns.get("photo") or columns.get("key")
        missing = [f for f in PLACE_FIELDS if f not in columns]
        if photo_column is None or missing:
            raise QuadratsegError(
                f"{source} needs the columns photo (or key), site, year and quadrat; it has "
                f"{', '.join(reader.fieldnames or []) or 'none'}"
            )
        rows = [
            (row[photo_column].strip(), {f: (row[columns[f]] or "").strip() for f in PLACE_FIELDS})
            for row in reader
        ]
    table: dict[str, dict[str, str]] = {}
    names: dict[str, list[str]] = {}
    for key, place in rows:
        table[key] = place
        names.setdefault(PurePosixPath(key).name, []).append(key)
    for name, keys in names.items():
        if len(keys) == 1 and name not in table:
            table[name] = table[keys[0]]
    return table


def photo_place(key: str, table: PhotoTable | None = None) -> dict[str, str]:
    """site, year and quadrat of the photo ``key``: each from the metadata ``table`` (by key, else
    by file name), else the key's folders (:func:`parse_photo_folders`), else the file name
    (:func:`parse_photo_name`); "" where no source has it."""
    sources = [
        (table or {}).get(key) or (table or {}).get(PurePosixPath(key).name) or {},
        parse_photo_folders(key),
        parse_photo_name(PurePosixPath(key).stem),
    ]
    return {f: next((s[f] for s in sources if s.get(f)), "") for f in PLACE_FIELDS}
