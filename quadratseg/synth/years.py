"""Surveys of the same synthetic quadrats over several years, with true lineages.

Each quadrat has a *world*: the reef in a fixed frame (the first survey's warped frame, ``size`` px
square), a seabed and colonies as bool masks. Year after year every colony draws one fate
(:class:`YearRates`): death, fission (cut through its centre into pieces), partial mortality (a
patch of tissue lost inside the outline), growth, shrinkage or no change; neighbouring colonies of
one genus may fuse; recruits settle on free reef. Colonies never overlap (a colony's growth stops
at its neighbours), so every mask is exactly the visible coral.

Each survey sees the world through its own frame placement: a small similarity (the frame laid a
few cm off: ``max_shift`` of the side, ``max_turn_deg``) maps the world into the survey's warped
frame, and each photo draws its own light. The true links of each interval are the pairs (colony
of year k, colony of year k + 1) where the second descends from the first; events follow TagLab's
rules (:func:`quadratseg.track.matching.links_from_pairs`) on the true areas.

Layout written by :func:`generate_years` (``OUT``)::

    OUT/
    ├── <year>/                  one survey: the layout of quadratseg.synth.dataset
    │   ├── cvat_exports/corners|grid|segmentation/images/test/<site>_<year>_<quadrat>.jpg
    │   ├── truth.json           each photo's truth, each coral with its ``lineage``
    │   └── manifest.json
    └── lineages.json            per quadrat and interval the true rows: source and target colony
                                 (indices into truth.json's corals), event, split_fuse, areas
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.geometry import mask_to_polygons
from quadratseg.instances import Instance
from quadratseg.synth.appearance import GENUS_LOOKS, colony_outline, paint_colony, seabed
from quadratseg.track.matching import Link, links_from_pairs, overlaps

logger = logging.getLogger(__name__)

SITE = "SynthReef"


@dataclass(frozen=True)
class YearRates:
    """Yearly probabilities of each colony's fate, and the sizes of the changes.

    Attributes:
        dead, split, partial, grow, shrink: per colony and year (the rest stays the same).
        fuse: per pair of same-genus neighbours closer than ``fuse_gap`` of the side.
        recruits: mean recruits per quadrat and year (Poisson).
        growth: largest growth of the radius per year, as a share of the radius.
    """

    dead: float = 0.08
    split: float = 0.08
    partial: float = 0.1
    grow: float = 0.45
    shrink: float = 0.12
    fuse: float = 0.8
    fuse_gap: float = 0.03
    recruits: float = 2.0
    growth: float = 0.25


@dataclass(frozen=True)
class YearsConfig:
    """Parameters of a multi-year synthetic set (saved in each manifest)."""

    quadrats: int = 2
    years: int = 2
    first_year: int = 2019
    seed: int = 0
    size: int = 512  # warped side in px (the world's side)
    colonies: int = 12
    max_shift: float = 0.02  # frame re-placed: shift as a share of the side
    max_turn_deg: float = 1.5
    world: str = "simple"  # frames, light and reef look: "simple" or "varied" (quadratseg.synth.scene)
    rates: YearRates = field(default_factory=YearRates)

    def validate(self) -> None:
        """Raise a clear error for unusable parameters."""
        if self.quadrats < 1 or self.years < 2:
            raise QuadratsegError(
                f"need at least 1 quadrat and 2 years, got {self.quadrats} and {self.years}"
            )
        if self.size < 128:
            raise QuadratsegError(f"--size must be at least 128 px, got {self.size}")
        if self.world not in ("simple", "varied"):
            raise QuadratsegError(f"--world must be simple or varied, got {self.world!r}")


@dataclass
class WorldColony:
    """A colony of the world: its lineage, genus and pixels (bool (S, S), world frame)."""

    lineage: str
    label: str
    mask: np.ndarray


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _largest_part(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _parts(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    return [labels == k for k in order if stats[k, cv2.CC_STAT_AREA] >= min_area]


def _radius(mask: np.ndarray) -> float:
    return float(np.sqrt(mask.sum() / np.pi))


def first_world(rng: np.random.Generator, size: int, count: int) -> list[WorldColony]:
    """The first year's colonies: ``count`` outlines of genera drawn with repeats (so same-genus
    neighbours exist), placed without overlap (2 px apart at least)."""
    names = sorted(GENUS_LOOKS)
    genera = list(rng.choice(names, size=max(1, count // 2), replace=False))
    genera += list(rng.choice(genera, size=count - len(genera)))
    occupied = np.zeros((size, size), bool)
    colonies = []
    for k, label in enumerate(genera):
        look = GENUS_LOOKS[label]
        for _ in range(60):
            radius = look.size * size * rng.uniform(0.8, 1.3)
            centre = rng.uniform(0.06 * size + radius, 0.94 * size - radius, 2)
            outline = colony_outline(rng, (float(centre[0]), float(centre[1])), radius, look.lobes)
            inst = Instance.from_polygons(label, 1.0, [outline], (size, size))
            if inst is None:
                continue
            mask = inst.full_mask((size, size))
            if (cv2.dilate(mask.astype(np.uint8), _disk(2)).astype(bool) & occupied).any():
                continue
            occupied |= mask
            colonies.append(WorldColony(f"L{k + 1}", str(label), mask))
            break
    return colonies


def evolve(
    rng: np.random.Generator, colonies: list[WorldColony], rates: YearRates, next_lineage: int
) -> tuple[list[WorldColony], list[tuple[int, int]], int]:
    """One year of the world: the next colonies, the true pairs (previous index, next index) and the
    next free lineage number. See the module docstring for the fates."""
    size = colonies[0].mask.shape[0] if colonies else 0
    min_area = max(20, int(0.0002 * size * size))
    fused: dict[int, int] = {}
    gap = max(2, int(rates.fuse_gap * size))
    for i, a in enumerate(colonies):
        for j in range(i + 1, len(colonies)):
            b = colonies[j]
            if i in fused or j in fused or a.label != b.label:
                continue
            near = cv2.dilate(a.mask.astype(np.uint8), _disk(gap)).astype(bool) & b.mask
            if near.any() and rng.random() < rates.fuse:
                fused[i], fused[j] = j, i
    proposals: list[tuple[list[int], str, str, np.ndarray]] = []  # (sources, lineage, label, mask)
    done: set[int] = set()
    for i, colony in enumerate(colonies):
        if i in done:
            continue
        mask = colony.mask
        radius = _radius(mask)
        if i in fused:
            j = fused[i]
            done |= {i, j}
            union = colonies[i].mask | colonies[j].mask
            closed = cv2.morphologyEx(union.astype(np.uint8), cv2.MORPH_CLOSE, _disk(gap + 2)).astype(bool)
            grown = cv2.dilate(closed.astype(np.uint8), _disk(max(1, int(0.05 * radius)))).astype(bool)
            largest = i if colonies[i].mask.sum() >= colonies[j].mask.sum() else j
            proposals.append(([i, j], colonies[largest].lineage, colony.label, _largest_part(grown)))
            continue
        fate = rng.choice(
            ["dead", "split", "partial", "grow", "shrink", "same"],
            p=_fate_probabilities(rates),
        )
        if fate == "dead":
            continue
        if fate == "split" and radius > 10:
            ys, xs = np.nonzero(mask)
            cx, cy, angle = xs.mean(), ys.mean(), rng.uniform(0, np.pi)
            yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
            band = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle)) < max(3.0, 0.12 * radius)
            pieces = _parts(mask & ~band, min_area)[:3]
            if len(pieces) >= 2:
                for k, piece in enumerate(pieces):
                    proposals.append(([i], f"{colony.lineage}.{k + 1}", colony.label, piece))
                continue
            fate = "partial"
        if fate == "partial":
            ys, xs = np.nonzero(mask)
            pick = rng.integers(0, len(xs))
            hole = np.zeros_like(mask, dtype=np.uint8)
            cv2.circle(
                hole, (int(xs[pick]), int(ys[pick])), max(3, int(rng.uniform(0.25, 0.45) * radius)), 1, -1
            )
            mask = _largest_part(mask & ~hole.astype(bool))
        elif fate == "grow":
            mask = cv2.dilate(
                mask.astype(np.uint8), _disk(max(2, int(rng.uniform(0.08, rates.growth) * radius)))
            ).astype(bool)
        elif fate == "shrink":
            mask = _largest_part(
                cv2.erode(mask.astype(np.uint8), _disk(max(2, int(rng.uniform(0.06, 0.2) * radius)))).astype(
                    bool
                )
            )
        proposals.append(([i], colony.lineage, colony.label, mask))
    # recruits on free reef
    for _ in range(int(rng.poisson(rates.recruits))):
        label = str(rng.choice(sorted(GENUS_LOOKS)))
        radius = rng.uniform(0.02, 0.035) * size
        centre = rng.uniform(0.08 * size, 0.92 * size, 2)
        outline = colony_outline(rng, (float(centre[0]), float(centre[1])), radius, GENUS_LOOKS[label].lobes)
        inst = Instance.from_polygons(label, 1.0, [outline], (size, size))
        if inst is not None:
            proposals.append(([], f"L{next_lineage}", label, inst.full_mask((size, size))))
            next_lineage += 1
    # no overlaps: survivors first (in order), recruits last; each stops 2 px short of the others
    occupied = np.zeros((size, size), bool)
    out: list[WorldColony] = []
    pairs: list[tuple[int, int]] = []
    for sources, lineage, label, mask in proposals:
        free = mask & ~cv2.dilate(occupied.astype(np.uint8), _disk(2)).astype(bool)
        free = _largest_part(free) if free.any() else free
        if free.sum() < min_area:
            continue
        occupied |= free
        pairs.extend((i, len(out)) for i in sources)
        out.append(WorldColony(lineage, label, free))
    return out, pairs, next_lineage


def _fate_probabilities(rates: YearRates) -> list[float]:
    p = [rates.dead, rates.split, rates.partial, rates.grow, rates.shrink]
    if sum(p) > 1:
        raise QuadratsegError(f"the yearly fate probabilities add up to {sum(p):.2f} > 1")
    return [*p, 1 - sum(p)]


def frame_placement(rng: np.random.Generator, size: int, max_shift: float, max_turn_deg: float) -> np.ndarray:
    """A re-placed frame: the similarity (3, 3) world px -> survey px, turned about the centre by up to
    ``max_turn_deg`` and shifted by up to ``max_shift`` of the side (pixel-corner convention)."""
    angle = np.radians(rng.uniform(-max_turn_deg, max_turn_deg))
    shift = rng.uniform(-max_shift, max_shift, 2) * size
    c = size / 2
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    to_centre = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    back = np.array([[1, 0, c + shift[0]], [0, 1, c + shift[1]], [0, 0, 1]])
    return back @ rot @ to_centre


def survey_masks(colonies: list[WorldColony], placement: np.ndarray, size: int) -> list[np.ndarray]:
    """Each colony's mask in the survey's warped frame (bool (S, S); what leaves the frame is cut)."""
    from quadratseg.warp import warp_image

    return [
        warp_image(c.mask.astype(np.uint8), placement, (size, size), interpolation=cv2.INTER_NEAREST) > 0
        for c in colonies
    ]


def lineage_seed(seed: int, quadrat: int, lineage: str) -> list[int]:
    """The seed of a colony's texture: the same lineage looks the same every year."""
    return [seed, quadrat, zlib.crc32(lineage.split(".")[0].encode())]


def paint_interior(
    world_seabed: np.ndarray,
    colonies: list[WorldColony],
    masks: list[np.ndarray],
    placement: np.ndarray,
    seed: int,
    quadrat: int,
    world: str = "simple",
) -> np.ndarray:
    """The survey's clean warped interior (float32 RGB (S, S, 3)): the world's seabed seen through the
    frame placement, each colony painted on its survey mask with its lineage's look (the same every
    year): the simple world's genus look (:func:`quadratseg.synth.appearance.paint_colony`) or the
    varied world's growth form, colour and texture (:func:`quadratseg.synth.reef.paint_colony_pixels`)."""
    from quadratseg.synth.reef import colony_form, paint_colony_pixels
    from quadratseg.warp import warp_image

    size = world_seabed.shape[0]
    border = tuple(float(v) for v in world_seabed.reshape(-1, 3).mean(axis=0))
    canvas = warp_image(world_seabed, placement, (size, size), border_value=border).astype(np.float32)
    for colony, mask in zip(colonies, masks, strict=True):
        if not mask.any():
            continue
        look_seed = lineage_seed(seed, quadrat, colony.lineage)
        if world == "varied":
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            appearance = int(np.random.default_rng(look_seed).integers(0, 2**31))
            centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
            paint_colony_pixels(
                canvas,
                mask[y0:y1, x0:x1],
                (int(x0), int(y0)),
                colony.label,
                appearance,
                colony_form(colony.label, appearance),
                centre,
                max(_radius(mask), 2.0),
            )
            continue
        parts = mask_to_polygons(mask)
        texture = canvas.copy()
        paint_colony(texture, parts[0].exterior, GENUS_LOOKS[colony.label], np.random.default_rng(look_seed))
        canvas[mask] = texture[mask]
    return canvas


def true_rows(
    previous: list[np.ndarray],
    current: list[np.ndarray],
    labels: tuple[list[str], list[str]],
    pairs: list[tuple[int, int]],
) -> list[Link]:
    """The true rows of an interval (links with TagLab's events, dead and born) from the survey masks."""
    before = [Instance.from_mask(label, 1.0, m) for label, m in zip(labels[0], previous, strict=True)]
    after = [Instance.from_mask(label, 1.0, m) for label, m in zip(labels[1], current, strict=True)]
    return links_from_pairs(pairs, before, after, overlaps(before, after))


@dataclass
class QuadratYears:
    """One quadrat over the years: per year the colonies, their survey masks and placement."""

    index: int
    colonies: list[list[WorldColony]]
    masks: list[list[np.ndarray]]
    placements: list[np.ndarray]
    pairs: list[list[tuple[int, int]]]
    seabed: np.ndarray


def simulate_quadrat(config: YearsConfig, index: int) -> QuadratYears:
    """The world of quadrat ``index`` over ``config.years`` years (no rendering)."""
    rng = np.random.default_rng([config.seed, index, 31])
    size = config.size
    if config.world == "varied":
        from quadratseg.synth.reef import substrate

        world_seabed = substrate(rng, (size, size), float(size))
    else:
        world_seabed = seabed(rng, (size, size))
    colonies = [first_world(rng, size, config.colonies)]
    pairs: list[list[tuple[int, int]]] = []
    next_lineage = len(colonies[0]) + 1
    for _ in range(config.years - 1):
        nxt, year_pairs, next_lineage = evolve(rng, colonies[-1], config.rates, next_lineage)
        colonies.append(nxt)
        pairs.append(year_pairs)
    placements = [np.eye(3)] + [
        frame_placement(rng, size, config.max_shift, config.max_turn_deg) for _ in range(config.years - 1)
    ]
    masks = [survey_masks(c, p, size) for c, p in zip(colonies, placements, strict=True)]
    return QuadratYears(index, colonies, masks, placements, pairs, world_seabed)


def photo_name(year: int, quadrat: int) -> str:
    """``{site}_{year}_{quadrat}.jpg``, the naming the chain reads site, year and quadrat from."""
    return f"{SITE}_{year}_Q{quadrat:02d}.jpg"


def generate_years(out_dir: str | Path, config: YearsConfig, overwrite: bool = False) -> Path:
    """Write ``config.years`` surveys of ``config.quadrats`` quadrats and their true lineages.

    Each year is a folder in the layout of one synthetic set (:mod:`quadratseg.synth.dataset`), its
    photos in the ``test`` subset: the survey's interior (:func:`paint_interior`) photographed by
    :func:`quadratseg.synth.scene.render_quadrat` (frame, camera and light drawn per photo, in the
    config's world), grid and clean warped photos, and ``truth.json`` whose corals carry their
    ``lineage`` and ``area_px``. ``lineages.json`` holds the true rows of every interval (colony
    indices into each photo's ``corals``). The folder appears only when complete.
    """
    from quadratseg.formats.cvat_xml import write_cvat_xml
    from quadratseg.synth.dataset import build_cvat_documents, image_truth
    from quadratseg.synth.reef import Colony

    config.validate()
    out = Path(out_dir)
    with atomic_output_dir(out, overwrite) as tmp:
        truths: dict[int, list[dict[str, Any]]] = {y: [] for y in range(config.years)}
        lineages: list[dict[str, Any]] = []
        for q in range(config.quadrats):
            world = simulate_quadrat(config, q)
            kept = [[k for k, m in enumerate(masks) if m.any()] for masks in world.masks]
            for y in range(config.years):
                year = config.first_year + y
                name = photo_name(year, q)
                interior = paint_interior(
                    world.seabed,
                    world.colonies[y],
                    world.masks[y],
                    world.placements[y],
                    config.seed,
                    q,
                    config.world,
                )
                corals = []
                for k in kept[y]:
                    part = mask_to_polygons(world.masks[y][k])[0]  # the survey's colonies are one part each
                    corals.append(Colony(world.colonies[y][k].label, part.exterior, list(part.holes)))
                scene = render_quadrat_for_year(config, q, year, interior, corals)
                truth = image_truth(scene, name, "test")
                write_survey_photo(tmp / str(year), scene, truth, name)
                for coral, k, colony in zip(truth["corals"], kept[y], corals, strict=True):
                    coral.setdefault("holes_xy", [np.round(h, 2).tolist() for h in colony.holes_xy])
                    coral["lineage"] = world.colonies[y][k].lineage
                    coral["area_px"] = int(world.masks[y][k].sum())
                truth["site"], truth["year"], truth["quadrat"] = SITE, year, f"Q{q:02d}"
                truths[y].append(truth)
            for y in range(config.years - 1):
                a, b = kept[y], kept[y + 1]
                pairs = [(a.index(i), b.index(j)) for i, j in world.pairs[y] if i in a and j in b]
                rows = true_rows(
                    [world.masks[y][k] for k in a],
                    [world.masks[y + 1][k] for k in b],
                    ([world.colonies[y][k].label for k in a], [world.colonies[y + 1][k].label for k in b]),
                    pairs,
                )
                lineages.append(
                    {
                        "site": SITE,
                        "quadrat": f"Q{q:02d}",
                        "source_survey": photo_name(config.first_year + y, q),
                        "target_survey": photo_name(config.first_year + y + 1, q),
                        "rows": [asdict(r) for r in rows],
                    }
                )
        for y, year_truths in truths.items():
            year_dir = tmp / str(config.first_year + y)
            for folder, doc in build_cvat_documents(year_truths).items():
                write_cvat_xml(doc, year_dir / "cvat_exports" / folder / "annotations.xml")
            (year_dir / "truth.json").write_text(json.dumps({"images": year_truths}), encoding="utf-8")
            manifest = {
                "generator": "quadratseg.synth.years",
                "config": asdict(config),
                "year": config.first_year + y,
            }
            (year_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        (tmp / "lineages.json").write_text(json.dumps({"intervals": lineages}), encoding="utf-8")
    logger.info("wrote %d quadrats over %d years to %s", config.quadrats, config.years, out)
    return out


def render_quadrat_for_year(
    config: YearsConfig, quadrat: int, year: int, interior: np.ndarray, corals: list[Any]
) -> Any:
    """The survey's photo around its interior: raw photo 1.25 x 0.94 the warped side, frame, camera
    and light drawn from the quadrat's and year's own seed (another light every year)."""
    from quadratseg.synth.scene import render_quadrat

    rng = np.random.default_rng([config.seed, quadrat, year])
    raw_size = (round(config.size * 1.25), round(config.size * 0.94))
    return render_quadrat(
        rng, raw_size, config.size, [], colonies=corals, world=config.world, interior=interior
    )


def write_survey_photo(year_dir: Path, scene: Any, truth: dict[str, Any], name: str) -> None:
    """The photo's files in one survey's layout (:mod:`quadratseg.synth.dataset`): the raw photo
    (``corners``), the warped photo (``grid``) and the grid-free one (``segmentation``) in the
    ``test`` subset, and in the varied world its string and occluder masks."""
    from quadratseg.synth.dataset import export_image_path, write_raw_photo

    root = year_dir / "cvat_exports"
    quality = int(truth.get("jpeg_quality", 95))
    for folder, image in (
        ("corners", scene.raw),
        ("grid", scene.warped),
        ("segmentation", scene.warped_clean),
    ):
        path = export_image_path(root / folder, "test", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        orientation = int(truth.get("exif_orientation", 1)) if folder == "corners" else 1
        write_raw_photo(path, image, quality, orientation)
    if truth.get("world", "simple") != "simple":
        for key, mask in (
            ("string_mask", scene.string_mask_warped.astype(np.uint8) * 255),
            ("occluder_mask", scene.occluder_codes_raw),
        ):
            path = year_dir / truth[key]
            path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), mask):
                raise OSError(f"could not write {path}")
