"""One survey of one quadrat: its colonies as masks in its rectified frame.

A *survey* here is one photo (or one TagLab map) of one quadrat at one date. Its colonies are
:class:`quadratseg.instances.Instance` objects (exact pixels inside their box) in the survey's own
warped frame, ``frame_size=(width, height)`` px, with ``cm_per_px`` the side of a pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.instances import Instance


@dataclass
class Survey:
    """The colonies of one quadrat at one date.

    Attributes:
        name: unique name of the survey (a photo key, a TagLab image id).
        date: ISO date or year (``2019``, ``2019-05-02``); surveys of a quadrat are ordered by it.
        frame_size: (width, height) of the rectified frame in px.
        cm_per_px: side of a pixel in cm.
        colonies: the colonies, warped frame.
        ids: one id per colony (its index in the instances file, or TagLab's region id).
        site, quadrat: where it was taken (pairs surveys across dates).
    """

    name: str
    date: str
    frame_size: tuple[int, int]
    cm_per_px: float
    colonies: list[Instance] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    site: str = ""
    quadrat: str = ""

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = list(range(len(self.colonies)))
        if len(self.ids) != len(self.colonies):
            raise QuadratsegError(
                f"survey {self.name}: {len(self.ids)} ids for {len(self.colonies)} colonies; give one id each"
            )
        if len(set(self.ids)) != len(self.ids):
            raise QuadratsegError(f"survey {self.name}: colony ids repeat; give each colony its own id")

    @property
    def year(self) -> float:
        """The date as a decimal year (``2019-07-02`` -> 2019.5)."""
        return date_to_year(self.date)

    def area_cm2(self, index: int) -> float:
        """Area of colony ``index`` in cm^2."""
        return self.colonies[index].area * self.cm_per_px**2


def date_to_year(date: str) -> float:
    """A decimal year from ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (the day's share of its year).

    Raises:
        QuadratsegError: the text is no such date.

    Examples:
        >>> date_to_year("2019")
        2019.0
        >>> round(date_to_year("2020-07-02"), 3)
        2020.5
    """
    import datetime

    text = str(date).strip()
    try:
        if len(text) == 4:
            return float(int(text))
        if len(text) == 7:
            text += "-01"
        day = datetime.date.fromisoformat(text[:10])
    except ValueError as error:
        raise QuadratsegError(
            f"survey date {date!r} is not a year or an ISO date (YYYY, YYYY-MM or YYYY-MM-DD)"
        ) from error
    start = datetime.date(day.year, 1, 1)
    length = (datetime.date(day.year + 1, 1, 1) - start).days
    return day.year + (day - start).days / length


def warp_instances(
    instances: Sequence[Instance],
    homography: np.ndarray,
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
) -> list[Instance | None]:
    """Colonies moved by ``homography`` (3, 3; src px -> dst px, pixel-corner convention of
    :mod:`quadratseg.warp`) from a ``src_size=(w, h)`` frame into a ``dst_size=(w, h)`` frame.

    Nearest-neighbour resampling of each colony's full mask; a colony that leaves the frame is None
    (kept in place so indices still name the same colony).
    """
    from quadratseg.warp import warp_image

    out: list[Instance | None] = []
    for inst in instances:
        full = np.zeros((src_size[1], src_size[0]), np.uint8)
        inst.paint(full, 1)
        moved = warp_image(full, homography, dst_size, interpolation=cv2.INTER_NEAREST) > 0
        out.append(Instance.from_mask(inst.label, inst.score, moved, extra=dict(inst.extra)))
    return out
