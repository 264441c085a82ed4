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

    Each colony's box is resampled (nearest neighbour) into the window its corners map to, clipped to
    the destination frame; a colony that leaves the frame is None (kept in place so indices still
    name the same colony). The identity between frames of one size returns the colonies as they are.

    Examples:
        >>> inst = Instance("Porites", 1.0, np.ones((2, 3), bool), (4, 5))
        >>> shift = np.array([[1, 0, 10], [0, 1, 20], [0, 0, 1]], float)
        >>> warp_instances([inst], shift, (50, 50), (50, 50))[0].xyxy
        (14, 25, 17, 27)
    """
    from quadratseg.warp import transform_points, warp_image

    homography = np.asarray(homography, dtype=np.float64)
    if tuple(src_size) == tuple(dst_size) and np.allclose(homography / homography[2, 2], np.eye(3)):
        return list(instances)
    out: list[Instance | None] = []
    for inst in instances:
        x0, y0, x1, y1 = inst.xyxy
        corners = transform_points(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float), homography)
        wx0, wy0 = (max(int(np.floor(v)) - 1, 0) for v in corners.min(axis=0))
        wx1 = min(int(np.ceil(corners[:, 0].max())) + 1, dst_size[0])
        wy1 = min(int(np.ceil(corners[:, 1].max())) + 1, dst_size[1])
        if wx1 <= wx0 or wy1 <= wy0:
            out.append(None)
            continue
        local = (
            np.array([[1, 0, -wx0], [0, 1, -wy0], [0, 0, 1]], float)
            @ homography
            @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
        )
        moved = (
            warp_image(inst.box_mask.astype(np.uint8), local, (wx1 - wx0, wy1 - wy0), cv2.INTER_NEAREST) > 0
        )
        out.append(Instance.from_mask(inst.label, inst.score, moved, (wx0, wy0), dict(inst.extra)))
    return out


def frame_footprint(
    homography: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]
) -> np.ndarray | None:
    """The pixels of a ``dst_size=(w, h)`` frame that a ``src_size=(w, h)`` frame covers once moved by
    ``homography`` (src px -> dst px, pixel-corner convention): bool (h, w) of the dst frame, True
    where the src photo shows the same reef. None when it covers all of it.

    Examples:
        >>> shift = np.array([[1, 0, 2], [0, 1, 0], [0, 0, 1]], float)  # src laid 2 px to the right
        >>> frame_footprint(shift, (5, 1), (5, 1)).astype(int).tolist()
        [[0, 0, 1, 1, 1]]
        >>> frame_footprint(np.diag([0.5, 0.5, 1]), (10, 10), (5, 5)) is None  # a larger warp of it
        True
    """
    from quadratseg.warp import warp_image

    homography = np.asarray(homography, dtype=np.float64)
    if tuple(src_size) == tuple(dst_size) and np.allclose(homography / homography[2, 2], np.eye(3)):
        return None
    ones = np.ones((int(src_size[1]), int(src_size[0])), np.uint8)
    covered = warp_image(ones, homography, dst_size, cv2.INTER_NEAREST) > 0
    return None if covered.all() else covered


def clip_instances(instances: Sequence[Instance], keep_hw: np.ndarray | None) -> list[Instance | None]:
    """Each colony's pixels inside ``keep_hw`` (bool (H, W) of its frame; None keeps every pixel), as
    a colony of the same label and score; None where none is left (kept in place, so indices still
    name the same colony). A colony wholly inside comes back as it is.

    Examples:
        >>> inst = Instance("Porites", 1.0, np.ones((2, 4), bool), (1, 0))
        >>> keep = np.zeros((3, 6), bool)
        >>> keep[:, 3:] = True
        >>> clip_instances([inst], keep)[0].area
        4
    """
    if keep_hw is None:
        return list(instances)
    out: list[Instance | None] = []
    for inst in instances:
        x0, y0, x1, y1 = inst.xyxy
        inside = inst.box_mask & keep_hw[y0:y1, x0:x1]
        if np.array_equal(inside, inst.box_mask):
            out.append(inst)
        elif not inside.any():
            out.append(None)
        else:
            out.append(Instance.from_mask(inst.label, inst.score, inside, (x0, y0), dict(inst.extra)))
    return out
