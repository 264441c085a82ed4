"""Site, year and quadrat of a photo: from a metadata CSV, else its folders, else its file name.

A photo's *key* is its path relative to the survey folder (``Tiahura/2019/Q1.jpg``). Each photo
takes its place from one source, whole (:func:`photo_places`):

1. a metadata table (:func:`read_photo_metadata`: a CSV with columns ``photo`` or ``key``,
   ``site``, ``year``, ``quadrat``). Keys are normalised (``\\`` -> ``/``, ``./`` dropped); a row
   matches the photo whose key it equals, or whose key ends with it, or that it ends with (the
   survey folder's own name in front, ``images/Tiahura/2019/Q1.jpg``); a row without an
   extension matches by stem; a row without folders names a file and places the one photo of
   that name. A row that matches no photo, or several, is named in a note and not used; a key
   listed twice is refused. An empty cell stays empty.
2. the folders of the key: ``site/year/[transect/]photo.jpg`` (the last folder that is a year,
   1900-2099; the nearest folder above it that is not a generic name (:data:`GENERIC_FOLDERS`:
   ``images``, ``photos``, ``raw``...) is the site; the folders below it and the file's quadrat
   (the name's, when a name pattern matches, else its stem) form the quadrat, ``T1/Q1``);
3. the file name (:data:`NAME_PATTERNS`): ``site_year_quadrat`` and CRIOBE's
   ``SITE###DEPTH###YYYYMMDD_..._N``.

When the folders and the name both give a site and a year and they disagree, the folders are used
and the photo is named in a note.

Examples:
    >>> parse_photo_name("SynthNorth_2019_000")["site"]
    'SynthNorth'
    >>> photo_place("Tiahura/2019/Q1.jpg")
    {'site': 'Tiahura', 'year': '2019', 'quadrat': 'Q1'}
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from quadratseg.errors import QuadratsegError
from quadratseg.text_files import read_utf8_text

PLACE_FIELDS = ("site", "year", "quadrat")
# Photo names: the synthetic/CRIOBE "site_year_quadrat" and CRIOBE's "SITE###DEPTH###YYYYMMDD_..._N".
NAME_PATTERNS = (
    r"^(?P<site>[^#]+?)###[^#]*###(?P<year>(?:19|20)\d{2})(?P<month>\d{2})(?P<day>\d{2})_.*?_(?P<quadrat>\d+)$",
    r"^(?P<site>.+?)_(?P<year>(?:19|20)\d{2})_(?P<quadrat>[^_]+)$",
)
YEAR_FOLDER = re.compile(r"^(?:19|20)\d{2}$")
# the survey day in a file name that no name pattern dates: an ISO date YYYY-MM-DD standing alone
NAME_DATE = r"(?<!\d)(?P<year>(?:19|20)\d{2})-(?P<month>\d{2})-(?P<day>\d{2})(?!\d)"
# folder names that say how photos are stored, not where they were taken: never a site
GENERIC_FOLDERS = frozenset(
    {"images", "image", "imgs", "img", "photos", "photo", "pictures", "raw", "jpg", "jpeg", "data", "dcim"}
)
EMPTY_PLACE = {"site": "", "year": "", "quadrat": ""}

PhotoTable = Mapping[str, Mapping[str, str]]  # normalised key -> site, year, quadrat


def normalize_key(key: str) -> str:
    """A photo key with ``/`` separators, without a leading ``./`` or ``/``.

    Examples:
        >>> normalize_key(".\\\\Tiahura\\\\2019\\\\Q1.jpg")
        'Tiahura/2019/Q1.jpg'
    """
    parts = [p for p in key.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


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
    return dict(EMPTY_PLACE)


def parse_photo_folders(key: str) -> dict[str, str]:
    """site, year and quadrat from the folders of a relative key ``.../site/year/[T1/]photo.jpg``.

    The last folder that is a year gives the year, the nearest folder above it that is not generic
    (:data:`GENERIC_FOLDERS`) the site, and the folders below it with the file stem the quadrat; a
    key without a year folder gives nothing ("" everywhere).

    Examples:
        >>> parse_photo_folders("survey/Tiahura/2019/T1/Q1.jpg")
        {'site': 'Tiahura', 'year': '2019', 'quadrat': 'T1/Q1'}
        >>> parse_photo_folders("Tiahura/Q1.jpg")
        {'site': '', 'year': '', 'quadrat': ''}
    """
    path = PurePosixPath(normalize_key(key))
    folders = list(path.parts[:-1])
    years = [k for k, part in enumerate(folders) if YEAR_FOLDER.match(part)]
    if not years:
        return dict(EMPTY_PLACE)
    k = years[-1]
    site = next((f for f in reversed(folders[:k]) if f.lower() not in GENERIC_FOLDERS), "")
    return {"site": site, "year": folders[k], "quadrat": "/".join([*folders[k + 1 :], path.stem])}


def path_place(key: str) -> tuple[dict[str, str], str]:
    """site, year and quadrat from the key's folders (when they hold a year and a site), else from
    its name, each source taken whole; and a note ("" if none) when both give a site and year and
    they disagree (the folders are used). Under a year folder, the quadrat is the name's when a
    name pattern matches.

    Examples:
        >>> path_place("Tiahura/2019/Tiahura_2019_05.jpg")
        ({'site': 'Tiahura', 'year': '2019', 'quadrat': '05'}, '')
    """
    key = normalize_key(key)
    folders = parse_photo_folders(key)
    name = parse_photo_name(PurePosixPath(key).stem)
    if not folders["year"]:
        return name, ""
    if name["year"]:
        below = folders["quadrat"].split("/")[:-1]
        folders["quadrat"] = "/".join([*below, name["quadrat"]])
    if not folders["site"] and name["site"]:
        return name, ""  # e.g. images/2020/MooreaE2B_2020_05.jpg: the name says it all
    note = ""
    if name["site"] and (name["site"].lower(), name["year"]) != (folders["site"].lower(), folders["year"]):
        note = (
            f"{key}: its folders say {folders['site']} {folders['year']}, its name {name['site']} "
            f"{name['year']} (the folders are used)"
        )
    return folders, note


def photo_date(key: str, place: Mapping[str, str]) -> str:
    """The survey date of a placed photo: its metadata's ``date`` (ISO ``YYYY-MM-DD``) when the row
    has one, else the day its file name carries (a name pattern's month and day, CRIOBE's
    ``###YYYYMMDD_``, else :data:`NAME_DATE`) when that day is of the photo's year, else the year.

    Examples:
        >>> photo_date("MOO###10m###20190315_UTP_QUADRAT_1.jpg", {"year": "2019"})
        '2019-03-15'
        >>> photo_date("Tiahura/2019/Q1.jpg", {"year": "2019"})
        '2019'
    """
    import datetime

    stated = str(place.get("date") or "").strip()
    if stated:
        return stated
    year = str(place.get("year") or "")
    stem = PurePosixPath(normalize_key(key)).stem
    for pattern in (*NAME_PATTERNS, NAME_DATE):
        match = re.search(pattern, stem)
        if match and match.groupdict().get("month") and match["year"] == year:
            try:
                return datetime.date(int(year), int(match["month"]), int(match["day"])).isoformat()
            except ValueError:  # no such day: the digits are something else
                continue
    return year


def _is_day_of(text: str, year: str) -> bool:
    """Whether ``text`` is an ISO day ``YYYY-MM-DD`` of ``year``.

    Examples:
        >>> [_is_day_of(day, "2019") for day in ("2019-03-15", "2019-02-30", "2020-01-01")]
        [True, False, False]
    """
    import datetime

    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10 and str(day.year) == str(year)


def read_photo_metadata(path: str | Path) -> dict[str, dict[str, str]]:
    """A metadata CSV as a table: normalised key (:func:`normalize_key`) -> site, year, quadrat.

    Columns: ``photo`` or ``key`` (the photo's path relative to the survey folder, or its file
    name, with or without the extension), ``site``, ``year``, ``quadrat`` (a missing column is an
    error; empty cells are allowed), and ``date`` when the table has one (the survey day,
    ``YYYY-MM-DD``, :func:`photo_date`). Match it to photos with :func:`photo_places`.

    The file is UTF-8 text (with or without a byte-order mark).

    Raises:
        QuadratsegError: the file is missing, not UTF-8, lacks a photo column or site, year and
            quadrat, or lists a key twice.
    """
    source = Path(path)
    text = read_utf8_text(source, "metadata file")
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        photo_column = columns.get("photo") or columns.get("key")
        missing = [f for f in PLACE_FIELDS if f not in columns]
        if photo_column is None or missing:
            raise QuadratsegError(
                f"{source} needs the columns photo (or key), site, year and quadrat; it has "
                f"{', '.join(reader.fieldnames or []) or 'none'}"
            )
        fields = [*PLACE_FIELDS, *(["date"] if "date" in columns else [])]
        rows = [
            (
                normalize_key(row[photo_column] or ""),
                {f: (row[columns[f]] or "").strip() for f in fields},
            )
            for row in reader
        ]
    table: dict[str, dict[str, str]] = {}
    line: dict[str, int] = {}
    for k, (key, place) in enumerate(rows, start=2):
        if not key:
            raise QuadratsegError(f"{source} row {k} has no photo key")
        if place.get("date") and not _is_day_of(place["date"], place["year"]):
            raise QuadratsegError(
                f"{source} row {k}: date {place['date']!r} is not a day (YYYY-MM-DD) of its year "
                f"{place['year'] or '(empty)'}; fix the cell or leave it empty"
            )
        if key in table:
            raise QuadratsegError(
                f"{source} lists {key} twice (rows {line[key]} and {k}): keep one row per photo"
            )
        table[key], line[key] = place, k
    return table


def _row_matches(row_key: str, key: str) -> bool:
    """The metadata ``row_key`` names the photo ``key`` (both normalised): equal, one ending with
    the other by whole folders (a row without folders: the file name), by stem when the row has no
    extension."""
    row, photo = PurePosixPath(row_key).parts, PurePosixPath(key).parts
    if not PurePosixPath(row_key).suffix:
        photo = (*photo[:-1], PurePosixPath(key).stem)
    if len(row) == 1:
        return row[0] == photo[-1]
    n = min(len(row), len(photo))
    return row[-n:] == photo[-n:]


def match_metadata(table: PhotoTable, keys: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Which metadata row places each photo: (photo key -> row key, notes). A row equal to a key
    places that photo only; else a row places the one photo it names (:func:`_row_matches`). Rows
    that match no photo or several are named in the notes and not used."""
    keys = list(keys)
    normal = {key: normalize_key(key) for key in keys}
    claims: dict[str, list[tuple[bool, int, str]]] = {}
    notes = []
    for row_key in table:
        exact = [key for key in keys if normal[key] == row_key]
        found = exact or [key for key in keys if _row_matches(row_key, normal[key])]
        if len(found) == 1:
            claims.setdefault(found[0], []).append((bool(exact), len(PurePosixPath(row_key).parts), row_key))
        elif not found:
            notes.append(f"metadata row {row_key} matches no photo: not used")
        else:
            named = ", ".join(sorted(found)[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            notes.append(f"metadata row {row_key} matches {len(found)} photos ({named}): not used")
    chosen = {}
    for key, rows in claims.items():
        *others, (_, _, best) = sorted(rows)  # the exact key, else the row naming most folders
        chosen[key] = best
        notes.extend(f"metadata row {row} not used: row {best} places {key}" for _, _, row in others)
    return chosen, notes


def photo_places(
    keys: Iterable[str], table: PhotoTable | None = None
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """site, year and quadrat of each photo key: its metadata row when ``table`` has one
    (:func:`match_metadata`), else :func:`path_place`; and notes for the user (unused metadata rows,
    folders and names that disagree)."""
    keys = list(keys)
    rows, notes = match_metadata(table, keys) if table else ({}, [])
    places = {}
    for key in keys:
        if key in rows:
            places[key] = dict(table[rows[key]])  # type: ignore[index]
            continue
        places[key], note = path_place(key)
        if note:
            notes.append(note)
    return places, notes + retake_notes(places)


def retake_notes(places: Mapping[str, Mapping[str, str]]) -> list[str]:
    """A note per quadrat (site, year and quadrat id all known) that several photos show: they count
    as one quadrat, the mean of their covers, in ``cover_summary.csv``.

    Example:
        >>> retake_notes({"a.jpg": {"site": "T", "year": "2019", "quadrat": "1"},
        ...               "b.jpg": {"site": "T", "year": "2019", "quadrat": "1"}})
        ['T 2019 quadrat 1: 2 photos (a.jpg, b.jpg), counted as one quadrat (the mean of their covers)']
    """
    by_quadrat: dict[tuple[str, str, str], list[str]] = {}
    for key, place in places.items():
        where = tuple(str(place.get(k) or "") for k in ("site", "year", "quadrat"))
        if all(where):
            by_quadrat.setdefault(where, []).append(key)  # type: ignore[arg-type]
    return [
        f"{site} {year} quadrat {quadrat}: {len(keys)} photos ({', '.join(sorted(keys))}), counted as "
        "one quadrat (the mean of their covers)"
        for (site, year, quadrat), keys in sorted(by_quadrat.items())
        if len(keys) > 1
    ]


def photo_place(key: str) -> dict[str, str]:
    """site, year and quadrat of the photo ``key`` from its folders, else its name
    (:func:`path_place`; with a metadata table: :func:`photo_places`)."""
    return path_place(key)[0]
