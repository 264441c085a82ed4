import numpy as np
import pytest

from quadratseg.errors import DegenerateQuadrilateralError
from quadratseg.warp import (
    DEFAULT_WARP_SIZE,
    band_outside_quadrat,
    check_quadrilateral,
    quadrat_homography,
    transform_points,
    warp_quadrat,
)

CORNERS = np.array([[120.0, 80.0], [520.0, 110.0], [560.0, 430.0], [90.0, 400.0]])


def test_default_warp_size_is_the_annotated_and_trained_side():
    # annotators label 1920 px quadrats in the bridge and the YOLO recipe trains at 1920 px
    assert DEFAULT_WARP_SIZE == 1920


def test_corners_map_to_the_output_square_and_back():
    h = quadrat_homography(CORNERS, (300, 200))
    assert np.allclose(transform_points(CORNERS, h), [[0, 0], [300, 0], [300, 200], [0, 200]])
    assert np.allclose(transform_points(transform_points(CORNERS, h), np.linalg.inv(h)), CORNERS)
    assert np.isnan(transform_points(np.array([[np.nan, 1.0]]), h)).all()


def test_image_and_points_warp_consistently():
    rng = np.random.default_rng(0)
    image = np.zeros((500, 640, 3), np.uint8)
    h = quadrat_homography(CORNERS, (400, 400))
    inside = transform_points(rng.uniform(60, 340, (12, 2)), np.linalg.inv(h))  # points inside the quadrat
    assert len(inside) == 12 and np.isfinite(inside).all()
    for x, y in inside:
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255  # 3x3 dot centred on pixel (x, y)
    warped, h2 = warp_quadrat(image, CORNERS, (400, 400))
    assert warped.shape == (400, 400, 3) and np.allclose(h, h2)
    centres = np.floor(inside) + 0.5
    checked = 0
    for p in transform_points(centres, h):
        x, y = p
        patch = warped[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5, 0].astype(float)
        assert patch.sum() > 0, f"no dot near {p}"
        yy, xx = np.mgrid[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5]
        cx, cy = (patch * (xx + 0.5)).sum() / patch.sum(), (patch * (yy + 0.5)).sum() / patch.sum()
        assert abs(cx - x) < 0.35 and abs(cy - y) < 0.35
        checked += 1
    assert checked == 12


def lattice_by_line_geometry(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image points of the quadrat's (u, v) in {0, 1/2, 1}^2 without a homography: the centre where
    the diagonals cross, edge midpoints where the line from the centre to the vanishing point of
    the two other edges crosses the edge."""
    hom = np.c_[corners, np.ones(4)]
    tl, tr, br, bl = hom
    centre = np.cross(np.cross(tl, br), np.cross(tr, bl))
    v_lr = np.cross(np.cross(tl, bl), np.cross(tr, br))
    v_tb = np.cross(np.cross(tl, tr), np.cross(bl, br))

    def mid(a, b, vanishing):
        return np.cross(np.cross(centre, vanishing), np.cross(a, b))

    points = {
        (0, 0): tl, (1, 0): tr, (1, 1): br, (0, 1): bl, (0.5, 0.5): centre,
        (0.5, 0): mid(tl, tr, v_lr), (0.5, 1): mid(bl, br, v_lr),
        (0, 0.5): mid(tl, bl, v_tb), (1, 0.5): mid(tr, br, v_tb),
    }  # fmt: skip
    return np.array([p[:2] / p[2] for p in points.values()]), np.array(list(points), dtype=float)


def test_the_homography_puts_analytic_points_on_their_place():
    for corners in (CORNERS, np.array([[10.0, 10.0], [300.0, 10.0], [300.0, 200.0], [10.0, 200.0]])):
        points, uv = lattice_by_line_geometry(corners)
        assert len(points) == 9
        h = quadrat_homography(corners, (300, 200))
        assert np.abs(transform_points(points, h) - uv * [300, 200]).max() < 1e-3
    from quadratseg.synth.checks import projective_lattice

    points, uv = projective_lattice(CORNERS, depth=2)
    assert len(points) == 25 and sorted(set(uv[:, 0])) == [0, 0.25, 0.5, 0.75, 1]
    assert np.abs(transform_points(points, quadrat_homography(CORNERS, (400, 400))) - uv * 400).max() < 1e-3
    # a wrong corner order would warp a different quadrilateral: the analytic points expose it
    rolled = quadrat_homography(np.roll(CORNERS, 1, axis=0), (400, 400))
    assert np.abs(transform_points(points, rolled) - uv * 400).max() > 50


@pytest.mark.parametrize(
    "corners, message",
    [
        ([[0, 0], [10, 0], [20, 0], [0, 10]], "collinear"),
        ([[0, 0], [10, 10], [10, 0], [0, 10]], "cross each other"),
        ([[0, 0], [0, 10], [10, 10], [10, 0]], "counter-clockwise"),
        ([[0, 0], [10, 0], [np.nan, np.nan], [0, 10]], "BR are missing"),
        ([[0, 0], [3, 0], [3, 3], [0, 3]], "below"),
        ([[0, 0], [10, 0], [10, 10]], "4 corners"),
        ([[0, 0], [10, 0], [2, 2], [0, 10]], "non-convex"),
    ],
)
def test_degenerate_corners_are_refused(corners, message):
    with pytest.raises(DegenerateQuadrilateralError, match=message):
        check_quadrilateral(np.array(corners, dtype=float))


def test_a_band_around_the_quadrat_is_measured_in_its_own_plane():
    """A frame's bar is one width in the quadrat's plane however the camera tilts: points of the plane a
    known share of the side beyond a side are in the band that holds that share, not in the next one;
    the quadrat itself and the far side of the horizon never are."""
    side = 400.0  # the plane: a 400 x 400 quadrat at the origin, seen through the photo's homography
    to_photo = np.linalg.inv(quadrat_homography(CORNERS, (side, side)))
    shape = (520, 680)
    for near, far in ((0.0, 0.03), (0.03, 0.06), (0.06, 0.15)):
        band = band_outside_quadrat(shape, CORNERS, near, far)
        for share, inside in ((near + 0.25 * (far - near), True), (far + 0.01, False), (-0.05, False)):
            plane = np.array([[side * 0.5, -share * side], [side * (1 + share), side * 0.4]])
            x, y = transform_points(plane, to_photo).T
            assert band[int(y[0]), int(x[0])] == inside
            assert band[int(y[1]), int(x[1])] == inside
    with pytest.raises(ValueError, match="near < far"):
        band_outside_quadrat(shape, CORNERS, 0.05, 0.02)


def test_a_band_keeps_to_the_quadrats_side_of_the_horizon():
    """A steep view whose horizon runs between the photo's first pixel and the quadrat: the band is the
    one around the quadrat, and no pixel beyond the horizon (where the plane's mapping turns over) is in
    it, however wide the band."""
    steep = np.array([[40.0, 50.0], [60.0, 50.0], [100.0, 100.0], [0.0, 100.0]])  # horizon at y = 37.5
    band = band_outside_quadrat((120, 100), steep, 0.0, 0.25)
    assert not band[75, 52]  # the quadrat itself
    assert band[105, 50] and band[75, 10]  # below the bottom bar, left of the left one
    assert band.sum() > 1000
    wide = band_outside_quadrat((120, 100), steep, 0.0, 50.0)
    assert not wide[:37].any() and wide[38:].any()
