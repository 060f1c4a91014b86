import numpy as np
import pytest
from PIL import Image

from edge_app.frames.crop import context_box, crop_face
from edge_app.frames.detector import Face


def reference_crop(rgb, face, scale, size):
    """The straightforward version: resize the whole frame with the box."""
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR, box=context_box(face, w, h, scale)))


@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (97, 131)])
def test_crop_matches_resizing_the_whole_frame(shape):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    h, w = shape
    for _ in range(40):
        fw = float(rng.uniform(8, min(h, w) * 0.9))
        face = Face(float(rng.uniform(-fw / 2, w - fw / 2)), float(rng.uniform(-fw / 2, h - fw / 2)), fw, fw, 0.9)
        for scale, size in ((1.6, 80), (2.7, 80), (4.0, 64), (1.0, 128)):
            diff = np.abs(crop_face(rgb, face, scale, size).astype(int) - reference_crop(rgb, face, scale, size))
            # only sub-pixel rounding may differ: never more than one level, on few pixels
            assert diff.max() <= 1 and diff.mean() < 0.5


def test_context_box_shifts_inward_instead_of_padding():
    face = Face(600, 10, 60, 60, 0.9)  # near the right and top edges of a 640x480 frame
    left, top, right, bottom = context_box(face, 640, 480, 2.0)
    assert left >= 0 and top == 0 and right <= 639 and bottom <= 479
    assert right - left == pytest.approx(120) and bottom - top == pytest.approx(120)


def test_context_scale_shrinks_to_fit_the_frame():
    face = Face(100, 100, 300, 300, 0.9)
    left, top, right, bottom = context_box(face, 640, 480, 4.0)
    assert bottom - top <= 479 and right - left <= 639
