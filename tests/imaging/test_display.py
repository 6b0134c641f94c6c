"""VOI window functions (DICOM PS3.3 C.11.2.1.2) against formulas written here, and their errors."""

import io

import numpy as np
import pytest

from app.errors import ImageFormatError
from app.imaging import decode_image
from app.imaging.display import minmax_to_uint8, window_to_uint8

X = np.linspace(-1200, 2200, 341)


def test_linear_exact_and_sigmoid():
    c, w = 40.0, 400.0
    exact = np.clip(np.rint(((X - c) / w + 0.5) * 255), 0, 255)
    np.testing.assert_array_equal(window_to_uint8(X, c, w, "LINEAR_EXACT"), exact)
    sigmoid = np.clip(np.rint(255 / (1 + np.exp(-4 * (X - c) / w))), 0, 255)
    np.testing.assert_array_equal(window_to_uint8(X, c, w, "SIGMOID"), sigmoid)


def test_width_one_is_a_threshold():
    out = window_to_uint8(np.array([9.0, 9.5, 10.0, 11.0]), 10, 1)
    np.testing.assert_array_equal(out, [0, 0, 255, 255])  # x <= c - 0.5 -> 0, else 255


@pytest.mark.parametrize(
    "function,width,message",
    [("LINEAR", 0.5, "window width must be >= 1 for a LINEAR window"),
     ("LINEAR_EXACT", 0, "window width must be > 0 for LINEAR_EXACT"),
     ("SIGMOID", -1, "window width must be > 0 for SIGMOID"),
     ("GAMMA", 10, "VOI LUT function 'GAMMA' is not supported")],
)
def test_window_errors(function, width, message):
    with pytest.raises(ImageFormatError, match=message):
        window_to_uint8(X, 0, width, function)


def test_minmax_constant_and_nan():
    out, (low, high) = minmax_to_uint8(np.full((3, 3), 7.0))
    assert (low, high) == (7.0, 7.0) and not out.any()
    values = np.array([[0.0, np.nan], [5.0, 10.0]])
    out, _ = minmax_to_uint8(values)
    np.testing.assert_array_equal(out, [[0, 0], [128, 255]])


def test_dicom_sigmoid_voi_function_from_file(dicom_dir):
    pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed")
    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    ds.VOILUTFunction = "SIGMOID"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    img = decode_image(buffer.getvalue(), "sigmoid.dcm")
    x = ds.pixel_array.astype(np.float64)
    expected = np.clip(np.rint(255 / (1 + np.exp(-4 * (x - 600) / 1600))), 0, 255)
    np.testing.assert_array_equal(img.display, expected)
    assert img.metadata["voi_function"] == "SIGMOID"


def test_dicom_zero_rows_is_refused(dicom_dir):
    pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed")
    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    ds.Rows = 0
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ImageFormatError, match=r"zero.dcm: zero-size image \(0 x 64\)"):
        decode_image(buffer.getvalue(), "zero.dcm")
