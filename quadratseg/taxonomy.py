"""Coral taxonomy levels and the mappings between them.

The table lives in ``quadratseg/data/taxonomy.csv``: one row per finegrained genus (the 16
labels of the CRIOBE CVAT project) with its parent at each coarser level:

    finegrained (16) -> extended (10, Banggai) -> main_family (7) -> agnostic ("coral")

Class merging is applied when preparing training data and when reporting cover. A user with
another table passes its path; a label outside the table raises :class:`UnknownLabelError`
listing close matches, unless the user maps it with ``aliases``.

Examples:
    >>> tax = load_taxonomy()
    >>> tax.map_label("Goniastrea", "main_family")
    'Merulinidae'
    >>> tax.classes("extended")[:3]
    ['Acropora', 'Astreopora', 'Fungia']
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from quadratseg.errors import QuadratsegError, UnknownLabelError
from quadratseg.text_files import read_utf8_text

DEFAULT_TABLE = Path(__file__).parent / "data" / "taxonomy.csv"
LEVELS = ("finegrained", "extended", "main_family", "agnostic")


@dataclass(frozen=True)
class Taxonomy:
    """Rows of finegrained labels with their parents; colours for the finegrained level."""

    rows: tuple[dict[str, str], ...]
    source: str = "built-in"

    def classes(self, level: str = "finegrained") -> list[str]:
        """Sorted class names of a level."""
        self._check_level(level)
        return sorted({row[level] for row in self.rows})

    def color(self, label: str) -> str:
        """Hex colour of a finegrained label (CVAT label config colour); grey when unknown."""
        for row in self.rows:
            if row["finegrained"] == label:
                return row.get("color") or "#808080"
        return "#808080"

    def mapping(self, target: str, source: str = "finegrained") -> dict[str, str]:
        """Dict label-at-``source`` -> label-at-``target`` (``target`` must be coarser)."""
        self._check_level(source)
        self._check_level(target)
        if LEVELS.index(target) < LEVELS.index(source):
            raise QuadratsegError(
                f"cannot map from {source!r} to the finer level {target!r}; levels from fine to "
                f"coarse are {', '.join(LEVELS)}"
            )
        return {row[source]: row[target] for row in self.rows}

    def finest_level(self, labels: Iterable[str]) -> str:
        """The finest level whose classes hold every label (the level predictions were made at).

        Raises:
            UnknownLabelError: a label is in no level, named with close finegrained matches.
        """
        wanted = set(labels)
        for level in LEVELS:
            if wanted <= set(self.classes(level)):
                return level
        self.check_labels(wanted - set().union(*(self.classes(lv) for lv in LEVELS)), "finegrained")
        raise QuadratsegError(f"labels {sorted(wanted)} mix taxonomy levels; no single level holds them all")

    def model_level(self, labels: Iterable[str], declared: str = "") -> tuple[str, str]:
        """(level, note) of a model's classes: the level its card ``declared`` (checked), else the
        finest level that holds every label, with a note for the user when several levels hold them
        (every extended class name is also a genus name: a model trained at the extended level,
        without a card saying so, would be reported as genera).

        Raises:
            QuadratsegError: the declared level is unknown or does not hold every label.
            UnknownLabelError: a label is in no level (from :meth:`finest_level`).

        Examples:
            >>> tax = load_taxonomy()
            >>> tax.model_level(tax.classes("extended"), declared="extended")
            ('extended', '')
            >>> tax.model_level(["Acropora", "Porites"])[1][:58]
            "the model's classes fit the taxonomy levels finegrained, e"
        """
        wanted = list(dict.fromkeys(labels))
        if declared:
            if declared not in LEVELS:
                raise QuadratsegError(f"unknown taxonomy level {declared!r}; levels are {', '.join(LEVELS)}")
            outside = sorted(set(wanted) - set(self.classes(declared)))
            if outside:
                raise QuadratsegError(
                    f"the model's card says its classes are of the {declared} level, but "
                    f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not {declared} classes; "
                    "correct the card's level"
                )
            return declared, ""
        level = self.finest_level(wanted)
        fitting = [lv for lv in LEVELS if set(wanted) <= set(self.classes(lv))]
        note = (
            f"the model's classes fit the taxonomy levels {', '.join(fitting)}; its cover is reported "
            f"at the finest, {level}. A model trained at a coarser level: write its level in the "
            "model_card.json beside its weights ('level')"
            if len(fitting) > 1
            else ""
        )
        return level, note

    def check_labels(
        self, labels: Iterable[str], level: str = "finegrained", aliases: Mapping[str, str] | None = None
    ) -> None:
        """Raise :class:`UnknownLabelError` listing every label not in ``level`` (after aliases)."""
        known = set(self.classes(level))
        aliases = aliases or {}
        unknown = {}
        for label in set(labels):
            resolved = aliases.get(label, label)
            if resolved not in known:
                unknown[label] = difflib.get_close_matches(resolved, sorted(known), n=3, cutoff=0.6)
        if unknown:
            raise UnknownLabelError(unknown, level)

    def map_label(
        self,
        label: str,
        target: str,
        source: str = "finegrained",
        aliases: Mapping[str, str] | None = None,
    ) -> str:
        """Map one label from ``source`` to ``target`` level; unknown labels raise with close matches."""
        resolved = (aliases or {}).get(label, label)
        table = self.mapping(target, source)
        if resolved not in table:
            self.check_labels([label], source, aliases)
        return table[resolved]

    def map_labels(
        self,
        labels: Iterable[str],
        target: str,
        source: str = "finegrained",
        aliases: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Map many labels at once; every unknown label is reported together."""
        labels = list(labels)
        self.check_labels(labels, source, aliases)
        table = self.mapping(target, source)
        aliases = aliases or {}
        return [table[aliases.get(label, label)] for label in labels]

    def _check_level(self, level: str) -> None:
        if level not in LEVELS:
            close = difflib.get_close_matches(level, LEVELS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise QuadratsegError(f"unknown taxonomy level {level!r}{hint}; levels: {', '.join(LEVELS)}")


def parse_taxonomy_rows(rows: list[dict[str, str]], source: str) -> Taxonomy:
    """Validate table rows: every level present, no empty cells, one parent per label."""
    if not rows:
        raise QuadratsegError(f"taxonomy table {source} has no rows")
    missing = [level for level in LEVELS if level not in rows[0]]
    if missing:
        raise QuadratsegError(
            f"taxonomy table {source} lacks the column(s) {', '.join(missing)}; "
            f"the header must be {','.join(LEVELS)}[,color]"
        )
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        for level in LEVELS:
            if not (row.get(level) or "").strip():
                raise QuadratsegError(f"{source}, line {line}: empty {level!r} cell")
        if row["finegrained"] in seen:
            raise QuadratsegError(f"{source}, line {line}: {row['finegrained']!r} is listed twice")
        seen.add(row["finegrained"])
    for child, parent in itertools.pairwise(LEVELS):
        parents: dict[str, str] = {}
        for row in rows:
            previous = parents.setdefault(row[child], row[parent])
            if previous != row[parent]:
                raise QuadratsegError(
                    f"{source}: {child} {row[child]!r} has two {parent} parents, "
                    f"{previous!r} and {row[parent]!r}; a label must have one parent"
                )
    return Taxonomy(tuple({k: v.strip() for k, v in row.items() if k} for row in rows), source)


@lru_cache(maxsize=8)
def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load a taxonomy CSV (default: the built-in CRIOBE table)."""
    table = Path(path) if path is not None else DEFAULT_TABLE
    with io.StringIO(read_utf8_text(table, "taxonomy table"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    return parse_taxonomy_rows(rows, str(table))
