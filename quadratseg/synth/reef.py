"""The varied world's reef: growth forms, colours shared between genera, substrate, visible-part truth.

All images are float32 RGB (H, W, 3) in 0..255 in the *plane* frame: the quadrat's interior seen
from above at warped-pixel scale, extended by a margin on every side (the reef goes on beyond
the frame). Colony outlines are given in warped pixels (interior TL at (0, 0)); ``offset`` is
where the interior's TL lies in the plane image.

Truth is the *visible* part of each colony inside the interior: a colony painted later covers
the ones below it, a dead patch (a hole) shows substrate, and a colony reaching past the frame
is cut at the interior's edge. The painter and the truth use the same rasterizer
(:func:`quadratseg.geometry.polygons_to_mask`, pixel centres, even-odd), so a class map drawn
from the truth polygons equals the painted coral pixel for pixel (bar pixels whose centre lies
on a shared edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from quadratseg.geometry import PolygonWithHoles, polygon_area, polygons_to_mask
from quadratseg.synth.appearance import colony_outline, fractal_noise, smooth_noise

GROWTH_FORMS = ("branching", "massive", "encrusting", "plating", "digitate", "foliose", "solitary")

# Coral colours (RGB before the water's cast) shared by the genera: colour alone does not tell them apart.
PALETTE: dict[str, tuple[int, int, int]] = {
    "brown": (125, 92, 62),
    "tan": (178, 150, 108),
    "cream": (206, 194, 162),
    "pink": (192, 122, 140),
    "purple": (118, 80, 118),
    "green": (112, 138, 92),
    "bluegrey": (112, 126, 140),
    "yellow": (192, 170, 84),
    "ochre": (168, 112, 62),
}

# Per genus: growth forms with weights, colours with weights, and the typical radius (share of the side).
GENUS_FORMS: dict[str, tuple[dict[str, float], dict[str, float], float]] = {
    "Acanthastrea": ({"massive": 0.6, "encrusting": 0.4}, {"green": 2, "brown": 2, "bluegrey": 1}, 0.06),
    "Acropora": (
        {"branching": 0.45, "plating": 0.35, "digitate": 0.2},
        {"tan": 2, "brown": 2, "purple": 1, "cream": 1, "bluegrey": 1},
        0.10,
    ),
    "Astreopora": ({"massive": 0.8, "encrusting": 0.2}, {"tan": 2, "cream": 1, "brown": 1}, 0.07),
    "Atrea": ({"massive": 0.7, "encrusting": 0.3}, {"yellow": 1, "ochre": 2, "brown": 1}, 0.06),
    "Fungia": ({"solitary": 1.0}, {"cream": 2, "tan": 2, "brown": 1}, 0.04),
    "Goniastrea": ({"massive": 0.8, "encrusting": 0.2}, {"yellow": 1, "brown": 2, "green": 1}, 0.07),
    "Leptastrea": ({"encrusting": 0.7, "massive": 0.3}, {"purple": 2, "brown": 1, "green": 1}, 0.05),
    "Merulinidae": ({"foliose": 0.5, "massive": 0.5}, {"green": 2, "bluegrey": 1, "brown": 1}, 0.08),
    "Millepora": ({"encrusting": 0.5, "branching": 0.3, "plating": 0.2}, {"yellow": 3, "cream": 1}, 0.08),
    "Montastrea": ({"massive": 0.9, "encrusting": 0.1}, {"brown": 2, "ochre": 1, "green": 1}, 0.07),
    "Montipora": (
        {"encrusting": 0.4, "plating": 0.4, "foliose": 0.2},
        {"purple": 2, "brown": 2, "pink": 1, "bluegrey": 1},
        0.09,
    ),
    "Other": ({f: 1.0 for f in GROWTH_FORMS if f != "solitary"}, dict.fromkeys(PALETTE, 1.0), 0.06),
    "Pavona/Leptoseris": ({"foliose": 0.6, "plating": 0.4}, {"ochre": 2, "brown": 2, "tan": 1}, 0.08),
    "Pocillopora": ({"branching": 0.8, "digitate": 0.2}, {"pink": 2, "brown": 2, "cream": 1}, 0.06),
    "Porites": (
        {"massive": 0.7, "digitate": 0.2, "encrusting": 0.1},
        {"tan": 2, "yellow": 1, "cream": 1, "purple": 1},
        0.11,
    ),
    "Psammocora": ({"encrusting": 0.6, "massive": 0.4}, {"bluegrey": 2, "brown": 1, "purple": 1}, 0.05),
}

# Outline irregularity (colony_outline's ``lobes``) and radius factor per growth form.
FORM_OUTLINE: dict[str, tuple[float, float]] = {
    "branching": (0.9, 1.0),
    "massive": (0.15, 1.0),
    "encrusting": (0.7, 1.1),
    "plating": (0.25, 1.15),
    "digitate": (0.5, 0.9),
    "foliose": (0.55, 1.0),
    "solitary": (0.05, 0.8),
}


@dataclass
class Colony:
    """A coral colony: finegrained ``label``, outline (N, 2) in warped pixels and optional holes.

    ``holes_xy``: rings (M, 2) of dead patches inside it (substrate shows there). ``seed``: the
    appearance seed (growth form, colour, texture); the same seed paints the same colony, so one
    colony looks alike over several renderings. ``form``: the growth form (None: drawn from the seed).
    """

    label: str
    polygon_xy: np.ndarray
    holes_xy: list[np.ndarray] = field(default_factory=list)
    seed: int | None = None
    form: str | None = None


@dataclass
class VisiblePart:
    """One connected visible part of a colony in the interior (warped pixels)."""

    label: str
    colony: int  # index of its colony in the painted list
    polygon: PolygonWithHoles


def _weighted_choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def colony_form(label: str, seed: int) -> str:
    """The growth form a colony of ``label`` with appearance ``seed`` takes."""
    forms = GENUS_FORMS.get(label, GENUS_FORMS["Other"])[0]
    return _weighted_choice(np.random.default_rng([seed, 1]), forms)


def colony_colours(label: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(base, accent) RGB float32 of a colony: a palette colour of its genus, jittered +-12 %."""
    rng = np.random.default_rng([seed, 2])
    colours = GENUS_FORMS.get(label, GENUS_FORMS["Other"])[1]
    base = np.array(PALETTE[_weighted_choice(rng, colours)], np.float32)
    base *= rng.uniform(0.88, 1.12, 3).astype(np.float32) * rng.uniform(0.85, 1.15)
    accent = base * rng.uniform(0.55, 0.8) if rng.random() < 0.7 else base * rng.uniform(1.15, 1.35)
    return base.clip(10, 245), accent.clip(5, 250)


def form_texture(
    form: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator, radius_px: float
) -> np.ndarray:
    """Surface pattern in 0..1 (H, W) of a growth form on (u, v) normalized by the colony radius.

    Textures mix two scales: the form's structure (branches, lumps, plates, ridges) and fine
    detail (corallites, tips) whose period is a few pixels, as in a photo at quadrat scale.
    """
    h, w = u.shape
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    px = max(radius_px, 4.0)  # pixels per unit of u
    fine_cells = max(2, int(max(h, w) / rng.uniform(2.5, 5.0)))
    fine = smooth_noise(rng, (h, w), fine_cells)
    if form == "branching":
        tips = smooth_noise(rng, (h, w), max(2, int(max(h, w) / rng.uniform(4, 8))))
        gaps = smooth_noise(rng, (h, w), max(2, int(max(h, w) / rng.uniform(10, 18))))
        return np.clip(0.6 * (tips > 0.5) + 0.25 * gaps + 0.15 * fine, 0, 1)
    if form == "digitate":
        f = px / rng.uniform(3.5, 6.0) * np.pi
        jitter = 0.6 * (smooth_noise(rng, (h, w), max(2, int(max(h, w) / 12))) - 0.5)
        dots = np.sin(f * u + jitter) * np.sin(f * v - jitter) > 0.2
        return np.clip(0.7 * dots + 0.3 * fine, 0, 1)
    if form == "massive":
        lumps = fractal_noise(rng, (h, w), (3, 6))
        cell_f = px / rng.uniform(2.5, 5.0) * np.pi
        cells = 1.0 - np.abs(np.sin(cell_f * u)) * np.abs(np.sin(cell_f * v))
        return np.clip(0.55 * lumps + 0.25 * cells + 0.2 * fine, 0, 1)
    if form == "encrusting":
        mottle = fractal_noise(rng, (h, w), (4, 12))
        return np.clip(0.6 * mottle + 0.4 * fine, 0, 1)
    if form == "plating":
        bands = 0.5 + 0.5 * np.sin(r * rng.uniform(10, 22) * np.pi + 2 * smooth_noise(rng, (h, w), 4))
        rays = 0.5 + 0.5 * np.sin(theta * rng.integers(30, 70))
        return np.clip(0.45 * bands + 0.3 * rays + 0.25 * fine, 0, 1)
    if form == "foliose":
        f = px / rng.uniform(6, 12) * np.pi
        warp = 3.0 * smooth_noise(rng, (h, w), 5)
        ridges = np.abs(np.sin(f * u * 0.7 + f * v * 0.3 + warp * 3))
        return np.clip(0.7 * ridges + 0.3 * fine, 0, 1)
    # solitary: radial septa and a central mouth
    septa = 0.5 + 0.5 * np.sin(theta * rng.integers(40, 80))
    return np.clip(septa * np.clip(r * 3, 0, 1) * 0.8 + 0.2 * fine, 0, 1)


def paint_colony_pixels(
    canvas: np.ndarray,
    mask: np.ndarray,
    box_xy: tuple[int, int],
    label: str,
    seed: int,
    form: str,
    centre_xy: np.ndarray,
    radius_px: float,
) -> None:
    """Paint a colony's texture into ``canvas`` (plane frame) where ``mask`` (its box, bool) is set.

    ``box_xy``: the plane position of the mask's TL pixel; ``centre_xy`` the colony's centre in plane
    pixels; ``radius_px`` its mean radius.
    """
    x0, y0 = box_xy
    bh, bw = mask.shape
    rng = np.random.default_rng([seed, 3])
    base, accent = colony_colours(label, seed)
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    u = (xx + x0 + 0.5 - centre_xy[0]) / radius_px
    v = (yy + y0 + 0.5 - centre_xy[1]) / radius_px
    p = form_texture(form, u, v, rng, radius_px).astype(np.float32)
    grain = smooth_noise(rng, (bh, bw), max(2, int(max(bh, bw) / rng.uniform(1.5, 3.0))))
    # relief: darker towards the rim (domes) or in the gaps (branches); a soft light direction
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    relief = {"massive": 0.45, "branching": 0.3, "digitate": 0.3, "solitary": 0.3}.get(form, 0.15)
    m = mask
    shade = (1 - relief) + relief * np.clip(inside[m] / (0.4 * radius_px), 0, 1)
    light = 1.0 + 0.06 * (u[m] * np.cos(seed % 7) + v[m] * np.sin(seed % 7))
    # polyps and corallites: a crisp pixel-scale grain
    scalar = (0.6 + 0.8 * grain[m]) * shade * light
    colour = (base + (accent - base) * p[m][:, None]) * scalar[:, None]
    if rng.random() < 0.15:  # bleached patch: whiter, still live coral
        patch = (smooth_noise(rng, (bh, bw), 4) > rng.uniform(0.55, 0.75))[m]
        colour[patch] = colour[patch] * 0.3 + np.array([232, 232, 222], np.float32) * 0.7
    region = canvas[y0 : y0 + bh, x0 : x0 + bw]
    region[m] = colour.clip(0, 255)


# Substrate kinds: base colour (RGB), then weights of the shared fields (constant, fine grain,
# crisp specks, medium blotches, sand ripples) that modulate it.
SUBSTRATES: dict[str, tuple[tuple[int, int, int], tuple[float, float, float, float, float]]] = {
    "sand": ((196, 186, 160), (0.8, 0.2, 0.12, 0.0, 0.1)),
    "rubble": ((132, 124, 108), (0.35, 0.35, 0.45, 0.45, 0.0)),
    "turf": ((98, 92, 62), (0.45, 0.55, 0.35, 0.2, 0.0)),
    "crustose_algae": ((176, 110, 132), (0.55, 0.3, 0.2, 0.35, 0.0)),
    "macroalgae": ((86, 118, 52), (0.3, 0.5, 0.7, 0.2, 0.0)),
    "soft_coral": ((146, 116, 152), (0.45, 0.35, 0.3, 0.5, 0.0)),
}


def substrate(rng: np.random.Generator, shape_hw: tuple[int, int], scale_px: float) -> np.ndarray:
    """Non-coral seabed, float32 RGB (H, W, 3): sand ripples, rubble, turf, crustose algae,
    macroalgae and soft corals (:data:`SUBSTRATES`), each image with its own mix drawn from a
    Dirichlet, laid out by large-scale noise; ``scale_px``: pixels per quadrat side."""
    h, w = shape_hw
    side = max(h, w)
    k = side / max(scale_px, 1.0)  # quadrat sides across the image
    kinds = list(SUBSTRATES)
    mix = rng.dirichlet([1.2, 1.6, 1.5, 1.0, 0.6, 0.4])
    cells = (2.5, 4, 3, 5, 6, 5)
    small = (max(8, h // 4), max(8, w // 4))  # the layout is smooth: drawn at a quarter scale
    fields = np.stack(
        [smooth_noise(rng, small, max(2, int(c * k))) * m for c, m in zip(cells, mix, strict=True)]
    )
    owner = cv2.resize(fields.argmax(axis=0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    fine = smooth_noise(rng, shape_hw, max(2, side // 2)) - 0.5
    specks = (smooth_noise(rng, shape_hw, max(2, side // 2)) > 0.62).astype(np.float32) - 0.2
    medium = smooth_noise(rng, shape_hw, max(2, int(side / (0.05 * scale_px)))) - 0.5
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wavelength = scale_px * rng.uniform(0.03, 0.07)
    bend = 6.0 * cv2.resize(smooth_noise(rng, small, max(2, int(3 * k))), (w, h))
    ripples = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / wavelength * 2 * np.pi + bend)
    base = np.array([SUBSTRATES[n][0] for n in kinds], np.float32)
    weights = np.array([SUBSTRATES[n][1] for n in kinds], np.float32)
    wk = weights[owner]  # (H, W, 5)
    mod = wk[..., 0] + 1.3 * wk[..., 1] * fine + 1.2 * wk[..., 2] * specks + 1.2 * wk[..., 3] * medium
    mod += 0.5 * wk[..., 4] * ripples
    image = base[owner] * mod[..., None]
    shade = 0.35 + 0.95 * cv2.resize(
        fractal_noise(rng, small, (max(2, int(3 * k)), max(2, int(9 * k)))), (w, h)
    )
    return (image * (shade / mod.mean().clip(0.3, None) * 0.75)[..., None]).clip(0, 255)


def place_varied_colonies(
    rng: np.random.Generator, size_wh: tuple[int, int], genera: list[str]
) -> list[Colony]:
    """Colonies of the given genera for a target cover drawn in 5..90 %: overlapping, abutting,
    reaching past the interior's edge (warped pixels), some with dead patches (holes)."""
    sw, sh = size_wh
    s = min(sw, sh)
    cover = float(np.clip(rng.beta(1.6, 1.8) * 0.9, 0.05, 0.9))
    n = max(1, len(genera))
    weights = np.array([GENUS_FORMS.get(g, GENUS_FORMS["Other"])[2] for g in genera]) ** 2
    weights = weights * rng.lognormal(0, 0.35, n)
    # painted area overshoots the visible cover (overlaps, parts outside): aim at 1.25x
    area = 1.25 * cover * sw * sh * weights / weights.sum()
    colonies = []
    for label, a in zip(genera, area, strict=True):
        seed = int(rng.integers(0, 2**31))
        form = colony_form(label, seed)
        lobes, factor = FORM_OUTLINE[form]
        radius = float(np.clip(np.sqrt(a / np.pi) * factor, 0.025 * s, 0.45 * s))
        centre = rng.uniform([-0.05 * sw, -0.05 * sh], [1.05 * sw, 1.05 * sh])
        outline = colony_outline(rng, (float(centre[0]), float(centre[1])), radius, lobes)
        if form == "solitary":
            outline = centre + (outline - centre) * [1.0, rng.uniform(0.55, 0.85)]
        colonies.append(Colony(label, outline, dead_patches(rng, centre, radius, form, s), seed, form))
    return colonies


def dead_patches(
    rng: np.random.Generator, centre: np.ndarray, radius: float, form: str, s: float
) -> list[np.ndarray]:
    """Rings of dead patches (warped pixels) of a colony of ``form`` and ``radius`` at ``centre``, on a
    quadrat whose shorter side is ``s``: 30 % of the massive, encrusting and plating colonies over
    6 % of ``s`` hold 1 or 2."""
    holes = []
    if radius > 0.06 * s and form in ("massive", "encrusting", "plating") and rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            offset = rng.uniform(-0.35, 0.35, 2) * radius
            hole_r = radius * rng.uniform(0.12, 0.3)
            holes.append(
                colony_outline(
                    rng, (float(centre[0] + offset[0]), float(centre[1] + offset[1])), hole_r, 0.4, 32
                )
            )
    return holes


def visible_parts(
    colonies: list[Colony], size_wh: tuple[int, int], min_area: float = 4.0
) -> list[VisiblePart]:
    """The visible part of each colony inside the interior (warped pixels), painted in list order.

    A colony is cut by the colonies painted after it, by its own holes and by the interior's
    edge; each connected part becomes one :class:`VisiblePart` (with holes where a later colony
    lies inside it). Parts under ``min_area`` px^2 are dropped from truth *and* painting.
    """
    from shapely.geometry import Polygon, box
    from shapely.ops import unary_union

    sw, sh = size_wh
    frame = box(0, 0, sw, sh)
    shapes = []
    for c in colonies:
        poly = Polygon(c.polygon_xy, [h for h in c.holes_xy if len(h) >= 3]).buffer(0)
        shapes.append(poly)
    parts: list[VisiblePart] = []
    above = None
    for k in range(len(colonies) - 1, -1, -1):
        shape = shapes[k].intersection(frame)
        if above is not None:
            shape = shape.difference(above)
        above = shapes[k] if above is None else unary_union([above, shapes[k]])
        geoms = getattr(shape, "geoms", [shape])
        for g in geoms:
            if g.geom_type != "Polygon" or g.is_empty or g.area < min_area:
                continue
            exterior = np.asarray(g.exterior.coords)[:-1]
            holes = [np.asarray(i.coords)[:-1] for i in g.interiors if abs(Polygon(i).area) >= min_area]
            parts.append(VisiblePart(colonies[k].label, k, PolygonWithHoles(exterior, holes)))
    parts.sort(key=lambda p: p.colony)
    return parts


@dataclass(frozen=True)
class PlaneMap:
    """Warped pixels -> plane pixels: ``plane = warped * scale + offset`` (per axis).

    The plane image holds the interior at ``offset`` (its TL) with ``interior_wh`` pixels.
    """

    scale: tuple[float, float]
    offset: tuple[int, int]
    interior_wh: tuple[int, int]

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """Map points (N, 2) from warped to plane pixels."""
        return np.asarray(xy, np.float64) * self.scale + self.offset

    @property
    def mean_scale(self) -> float:
        """Plane pixels per warped pixel (geometric mean of the two axes)."""
        return float(np.sqrt(self.scale[0] * self.scale[1]))


def paint_reef(
    plane: np.ndarray,
    to_plane: PlaneMap,
    colonies: list[Colony],
    parts: list[VisiblePart],
    outside: list[Colony],
) -> None:
    """Paint the colonies into ``plane`` in place.

    Inside the interior, each visible part is painted from its truth polygon (mapped to the
    plane); beyond it, the colonies' outer pieces and the ``outside`` colonies (reef beyond the
    frame, no truth) are painted in order, clipped to outside the interior.
    """
    ph, pw = plane.shape[:2]
    (ox, oy), (iw, ih) = to_plane.offset, to_plane.interior_wh
    inside = np.zeros((ph, pw), bool)
    inside[oy : oy + ih, ox : ox + iw] = True
    for c in [*outside, *colonies]:
        ring = to_plane(c.polygon_xy)
        x0, y0 = np.maximum(np.floor(ring.min(axis=0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(ring.max(axis=0)).astype(int) + 1, [pw, ph])
        if x1 <= x0 or y1 <= y0:
            continue
        local = PolygonWithHoles(ring - [x0, y0], [to_plane(h) - [x0, y0] for h in c.holes_xy])
        mask = polygons_to_mask([local], (x1 - x0, y1 - y0)) & ~inside[y0:y1, x0:x1]
        if mask.any():
            _paint(plane, mask, (x0, y0), c, to_plane)
    for part in parts:
        c = colonies[part.colony]
        poly = PolygonWithHoles(to_plane(part.polygon.exterior), [to_plane(h) for h in part.polygon.holes])
        x0, y0 = np.maximum(np.floor(poly.exterior.min(axis=0)).astype(int), [ox, oy])
        x1, y1 = np.minimum(np.ceil(poly.exterior.max(axis=0)).astype(int) + 1, [ox + iw, oy + ih])
        if x1 <= x0 or y1 <= y0:
            continue
        local = PolygonWithHoles(poly.exterior - [x0, y0], [h - [x0, y0] for h in poly.holes])
        mask = polygons_to_mask([local], (x1 - x0, y1 - y0))
        if mask.any():
            _paint(plane, mask, (x0, y0), c, to_plane)


def _paint(
    plane: np.ndarray, mask: np.ndarray, box_xy: tuple[int, int], c: Colony, to_plane: PlaneMap
) -> None:
    """Paint colony ``c`` where ``mask`` (at plane pixel ``box_xy``) is set; its texture is anchored
    on its own centre, so its pieces inside and outside the interior match."""
    seed = c.seed if c.seed is not None else 0
    form = c.form or colony_form(c.label, seed)
    centre = c.polygon_xy.mean(axis=0)
    radius = max(float(np.linalg.norm(c.polygon_xy - centre, axis=1).mean()) * to_plane.mean_scale, 2.0)
    paint_colony_pixels(plane, mask, box_xy, c.label, seed, form, to_plane(centre[None])[0], radius)


def outside_colonies(
    rng: np.random.Generator,
    size_wh: tuple[int, int],
    extent_xyxy: tuple[float, float, float, float],
    like: list[Colony],
    cover: float,
    most: int = 200,
) -> list[Colony]:
    """Colonies of the reef beyond the frame (warped pixel coordinates; no truth), the reef inside
    going on: centres in ``extent_xyxy`` (the plane's extent in warped pixels) outside the interior,
    genera and sizes drawn from the interior's colonies ``like`` (each size scaled by a log-normal
    factor of sd 0.25 and by its own growth form), solitary colonies oval and dead patches as inside,
    added until a Boolean model of their discs covers ``cover`` (the interior's coral share) of the
    reef beyond (at most ``most`` colonies). No colony inside: none beyond.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> inside = [Colony("Porites", colony_outline(rng, (50.0, 50.0), 20.0, 0.3))]
        >>> beyond = outside_colonies(rng, (100, 100), (-100, -100, 200, 200), inside, 0.3)
        >>> {c.label for c in beyond}, 10 < len(beyond) < 60
        ({'Porites'}, True)
    """
    sw, sh = size_wh
    s = min(sw, sh)
    x0, y0, x1, y1 = extent_xyxy
    area_beyond = max((x1 - x0) * (y1 - y0) - sw * sh, 0.0)
    if not like or cover <= 0 or area_beyond <= 0:
        return []
    radii = [
        float(
            np.sqrt(polygon_area(c.polygon_xy) / np.pi)
            / FORM_OUTLINE[c.form or colony_form(c.label, c.seed or 0)][1]
        )
        for c in like
    ]
    # a Boolean model of discs: the covered share is 1 - exp(-painted area / area beyond)
    painted_target = -np.log(1.0 - min(cover, 0.95)) * area_beyond
    out: list[Colony] = []
    painted = 0.0
    while painted < painted_target and len(out) < most:
        k = int(rng.integers(len(like)))
        label = like[k].label
        seed = int(rng.integers(0, 2**31))
        form = colony_form(label, seed)
        radius = float(
            np.clip(radii[k] * FORM_OUTLINE[form][1] * rng.lognormal(0, 0.25), 0.025 * s, 0.45 * s)
        )
        for _try in range(50):
            c = rng.uniform([x0, y0], [x1, y1])
            if not (0 <= c[0] <= sw and 0 <= c[1] <= sh):
                break
        else:
            break  # no room beyond the interior
        outline = colony_outline(rng, (float(c[0]), float(c[1])), radius, FORM_OUTLINE[form][0])
        if form == "solitary":
            outline = c + (outline - c) * [1.0, rng.uniform(0.55, 0.85)]
        out.append(Colony(label, outline, dead_patches(rng, c, radius, form, s), seed, form))
        painted += polygon_area(outline)
    return out
