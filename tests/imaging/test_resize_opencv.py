"""Our numpy resize against opencv-python-headless (the reference AUCMEDI/albumentations call).

uint8 must match within 1 grey level (in practice bit-exact for nearest / linear / area /
Lanczos). float32 must match OpenCV's own C++ path within 1e-5 on [0, 1] data; the default
cv2 wheel routes some float32 linear/cubic cases through Intel IPP, whose coordinates differ
slightly, so against that build we allow 1e-4 (measured max 3.9e-5).
"""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed")

from app.errors import PreprocessError  # noqa: E402
from app.imaging.resize import resize  # noqa: E402

MODES = [0, 1, 2, 3, 4]
CASES = [
    ((37, 53), (224, 224)),  # up, odd, non-integer, aspect change
    ((300, 451), (224, 224)),  # down, non-integer
    ((480, 640), (224, 224)),
    ((64, 64), (32, 32)),  # exact 2x down: INTER_LINEAR becomes INTER_AREA
    ((90, 120), (30, 40)),  # exact 3x down: INTER_AREA integer path
    ((100, 90), (25, 30)),  # 4x / 3x
    ((7, 9), (5, 4)),
    ((224, 224), (299, 299)),
    ((50, 60), (97, 131)),
    ((128, 96), (128, 48)),  # one axis unchanged
    ((100, 100), (70, 150)),  # down in y, up in x (area falls back to its bilinear variant)
    ((1, 5), (3, 7)),
]


def _image(shape, channels, seed, smooth):
    rng = np.random.default_rng(seed)
    if smooth:
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
        planes = [(np.sin(xx / 7.0 + c) * np.cos(yy / 5.0) + 1) * 127.5 for c in range(channels)]
        img = np.stack(planes, -1).astype(np.uint8)
    else:
        img = rng.integers(0, 256, size=shape + (channels,), dtype=np.uint8)
    return img[..., 0] if channels == 1 else img


@pytest.fixture
def opencv_reference_path():
    """OpenCV with IPP / optimisations off: its portable C++ implementation."""
    was = cv2.useOptimized()
    cv2.setUseOptimized(False)
    yield
    cv2.setUseOptimized(was)


def _cv2(img, size, mode):
    return cv2.resize(img, (size[1], size[0]), interpolation=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", CASES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("smooth", [False, True])
def test_uint8_matches_opencv_within_one_level(mode, src, dst, channels, smooth):
    img = _image(src, channels, seed=hash((src, dst)) % 1000, smooth=smooth)
    ours = resize(img, dst, mode)
    ref = _cv2(img, dst, mode)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("mode", [0, 1, 3, 4])
@pytest.mark.parametrize("src,dst", CASES)
def test_uint8_bit_exact_for_nearest_linear_area_lanczos(mode, src, dst):
    img = _image(src, 3, seed=7, smooth=False)
    np.testing.assert_array_equal(resize(img, dst, mode), _cv2(img, dst, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_float32_matches_opencv_reference_within_1e5(mode, src, dst, channels, opencv_reference_path):
    img = _image(src, channels, seed=3, smooth=False).astype(np.float32) / 255
    ours = resize(img, dst, mode)
    ref = _cv2(img, dst, mode)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", CASES)
def test_float32_matches_default_opencv_build_within_1e4(mode, src, dst):
    img = _image(src, 3, seed=5, smooth=False).astype(np.float32) / 255
    assert np.abs(resize(img, dst, mode) - _cv2(img, dst, mode)).max() <= 1e-4


@pytest.mark.parametrize("mode", MODES)
def test_uint16_matches_opencv_within_one_level(mode):
    img = np.random.default_rng(1).integers(0, 65536, size=(61, 47), dtype=np.uint16)
    for dst in [(224, 224), (20, 13)]:
        ref = _cv2(img, dst, mode)
        assert np.abs(resize(img, dst, mode).astype(np.int64) - ref.astype(np.int64)).max() <= 1


def test_same_size_is_a_copy():
    img = _image((10, 12), 3, 0, False)
    out = resize(img, (10, 12), 2)
    np.testing.assert_array_equal(out, img)
    assert out is not img


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"interpolation": 5}, "interpolation must be an OpenCV code 0-4"),
        ({"size": (0, 10)}, "target size must be positive"),
    ],
)
def test_invalid_arguments(kwargs, message):
    args = {"size": (4, 4), "interpolation": 1, **kwargs}
    with pytest.raises(PreprocessError, match=message):
        resize(np.zeros((3, 3), np.uint8), args["size"], args["interpolation"])


def test_rejects_bad_shape_and_dtype():
    with pytest.raises(PreprocessError, match="expected an H x W or H x W x C image"):
        resize(np.zeros(5, np.uint8), (2, 2))
    with pytest.raises(PreprocessError, match="dtype int64 is not supported"):
        resize(np.zeros((3, 3), np.int64), (2, 2))
    with pytest.raises(PreprocessError, match="empty image"):
        resize(np.zeros((0, 3), np.uint8), (2, 2))
