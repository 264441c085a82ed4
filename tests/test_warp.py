import numpy as np
import pytest

from quadratseg.errors import DegenerateQuadrilateralError
from quadratseg.warp import check_quadrilateral, quadrat_homography, transform_points, warp_quadrat

CORNERS = np.array([[120.0, 80.0], [520.0, 110.0], [560.0, 430.0], [90.0, 400.0]])


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
    for x, y in inside:
        image[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255  # 3x3 dot centred on pixel (x, y)
    warped, h2 = warp_quadrat(image, CORNERS, (400, 400))
    assert warped.shape == (400, 400, 3) and np.allclose(h, h2)
    centres = np.floor(inside) + 0.5
    for p in transform_points(centres, h):
        x, y = p
        patch = warped[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5, 0].astype(float)
        yy, xx = np.mgrid[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5]
        cx, cy = (patch * (xx + 0.5)).sum() / patch.sum(), (patch * (yy + 0.5)).sum() / patch.sum()
        assert abs(cx - x) < 0.35 and abs(cy - y) < 0.35


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
