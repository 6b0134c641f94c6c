"""DICOM decoding against pydicom's own ``pixel_array`` plus the DICOM formulas written naively
here (Rescale Slope/Intercept, LINEAR window PS3.3 C.11.2.1.2.1, MONOCHROME1 inversion).

Files come from pydicom's wheel (``pydicom/data/test_files``); where a syntax / photometric has
no shipped sample we derive one from a shipped file with pydicom itself (said in each test).
"""

import io
import warnings

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed")

from app.errors import ImageFormatError  # noqa: E402
from app.imaging import decode, decode_image, make_thumbnail  # noqa: E402
from app.imaging import dicom as dicom_module  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")


def naive_window(x, center, width):
    """PS3.3 C.11.2.1.2.1, one pixel at a time."""
    out = np.empty(x.shape, dtype=np.uint8)
    for i, v in enumerate(np.asarray(x, np.float64).ravel()):
        if v <= center - 0.5 - (width - 1) / 2:
            y = 0.0
        elif v > center - 0.5 + (width - 1) / 2:
            y = 255.0
        else:
            y = ((v - (center - 0.5)) / (width - 1) + 0.5) * 255
        out.flat[i] = int(np.clip(np.rint(y), 0, 255))
    return out


def naive_minmax(x):
    x = np.asarray(x, np.float64)
    return np.clip(np.rint((x - x.min()) / (x.max() - x.min()) * 255), 0, 255).astype(np.uint8)


def reference(path):
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array


def to_bytes(ds):
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# file, transfer syntax, photometric (the table in docs/imaging.md)
GRAY_WINDOWED = [
    ("MR_small.dcm", "Explicit VR Little Endian"),
    ("MR_small_implicit.dcm", "Implicit VR Little Endian"),
    ("MR_small_bigendian.dcm", "Explicit VR Big Endian"),
    ("MR_small_RLE.dcm", "RLE Lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("693_J2KI.dcm", "JPEG 2000 Image Compression"),
]


@pytest.mark.parametrize("name,syntax", GRAY_WINDOWED)
def test_grayscale_with_file_window(dicom_dir, name, syntax):
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    expected_values = ref.astype(np.float64) * slope + intercept
    np.testing.assert_allclose(img.pixels, expected_values, rtol=0, atol=1e-3)
    center = float(ds.WindowCenter[0] if isinstance(ds.WindowCenter, pydicom.multival.MultiValue) else ds.WindowCenter)
    width = float(ds.WindowWidth[0] if isinstance(ds.WindowWidth, pydicom.multival.MultiValue) else ds.WindowWidth)
    np.testing.assert_array_equal(img.display, naive_window(expected_values, center, width))
    assert img.metadata["transfer_syntax"] == syntax
    assert img.metadata["window"] == [center, width] and img.metadata["window_source"] == "file"


def test_ct_rescale_slope_intercept_to_hounsfield(dicom_dir):
    name = "CT_small.dcm"
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    hu = ref.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert img.pixels.dtype == np.float32
    np.testing.assert_allclose(img.pixels, hu, atol=1e-3)
    np.testing.assert_array_equal(img.display, naive_minmax(hu))  # no window in the file
    lung = decode_image((dicom_dir / name).read_bytes(), name, window=(-600, 1500))
    np.testing.assert_array_equal(lung.display, naive_window(hu, -600, 1500))
    assert lung.metadata["window_source"] == "user"


def test_deflated_explicit_little_endian(dicom_dir):
    name = "image_dfl.dcm"
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    assert img.metadata["transfer_syntax"] == "Deflated Explicit VR Little Endian"
    np.testing.assert_array_equal(img.pixels, ref)
    np.testing.assert_array_equal(img.display, naive_minmax(ref))


def test_monochrome1_is_inverted(dicom_dir):
    # no MONOCHROME1 sample ships in the wheel: relabel the real MR_small with pydicom
    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    img = decode_image(to_bytes(ds), "mono1.dcm")
    expected = 255 - naive_window(ds.pixel_array, 600, 1600)
    np.testing.assert_array_equal(img.display, expected)
    assert img.metadata["inverted"] is True


def test_voi_lut_sequence(dicom_dir):
    # a VOI LUT Sequence added with pydicom to the real MR_small (no shipped sample has one)
    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    first, entries, bits = 0, 4096, 12
    lut = (np.sqrt(np.arange(entries) / (entries - 1)) * ((1 << bits) - 1)).astype(np.uint16)
    item = pydicom.Dataset()
    item.LUTDescriptor = [entries, first, bits]
    item.LUTData = lut.astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    img = decode_image(to_bytes(ds), "voilut.dcm")
    stored = ds.pixel_array.astype(np.int64)
    expected = lut[np.clip(stored - first, 0, entries - 1)].astype(np.float64) / ((1 << bits) - 1) * 255
    np.testing.assert_array_equal(img.display, np.rint(expected).astype(np.uint8))
    assert img.metadata["window_source"] == "file VOI LUT"


@pytest.mark.parametrize(
    "name,photometric",
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL"),  # JPEG baseline
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", "YBR_FULL_422"),  # JPEG baseline, subsampled
        ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422"),  # native YBR -> RGB by pydicom
        ("SC_rgb_rle.dcm", "RGB"),
        ("ExplVR_BigEnd.dcm", "RGB"),
        ("SC_rgb_gdcm_KY.dcm", "RGB"),  # JPEG 2000
        ("examples_jpeg2k.dcm", "YBR_RCT"),  # JPEG 2000 lossless, reversible colour transform
        ("examples_rgb_color.dcm", "RGB"),
    ],
)
def test_colour_files_match_pydicom_rgb(dicom_dir, name, photometric):
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    assert img.metadata["photometric"] == photometric
    np.testing.assert_array_equal(img.pixels, ref)
    np.testing.assert_array_equal(img.display, ref)
    assert img.display.shape[-1] == 3


def test_ybr_really_becomes_rgb(dicom_dir):
    # the same picture stored as RGB and as YBR_FULL (both from dcmtk): decoded colours agree
    rgb = decode_image((dicom_dir / "SC_rgb_dcmtk_+eb+cr.dcm").read_bytes(), "rgb.dcm").display.astype(int)
    ybr = decode_image((dicom_dir / "SC_rgb_dcmtk_+eb+cy+n1.dcm").read_bytes(), "ybr.dcm").display.astype(int)
    assert np.abs(rgb - ybr).mean() < 3


def test_palette_colour(dicom_dir):
    from pydicom.pixels import apply_color_lut

    name = "examples_palette.dcm"
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    rgb = apply_color_lut(ref, ds)
    np.testing.assert_array_equal(img.pixels, rgb)
    np.testing.assert_array_equal(img.display, np.rint(rgb / 65535 * 255).astype(np.uint8))


def test_multiframe_default_middle_and_chosen_frame(dicom_dir):
    name = "examples_ybr_color.dcm"  # 30 frames, JPEG baseline YBR_FULL_422
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    assert img.metadata["frames"] == 30 and img.metadata["frame"] == 15
    np.testing.assert_array_equal(img.pixels, ref[15])
    img3 = decode_image((dicom_dir / name).read_bytes(), name, frame=3)
    np.testing.assert_array_equal(img3.pixels, ref[3])
    with pytest.raises(ImageFormatError, match=r"examples_ybr_color.dcm: frame 30 out of range: the file has 30 frame\(s\)"):
        decode_image((dicom_dir / name).read_bytes(), name, frame=30)


def test_multiframe_rle_grayscale(dicom_dir):
    name = "rtdose_rle.dcm"
    ds, ref = reference(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name, frame=2)
    np.testing.assert_array_equal(img.pixels, ref[2])
    np.testing.assert_array_equal(img.display, naive_minmax(ref[2]))


def test_reencoded_rle_and_deflate_from_ct(dicom_dir):
    # derived files: CT_small re-encoded by pydicom's own RLE encoder / deflate writer
    # (shipped big-endian samples cover Explicit VR Big Endian)
    from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

    original = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    expected = original.pixel_array
    rle = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    rle.compress(RLELossless)
    deflated = pydicom.dcmread(dicom_dir / "CT_small.dcm")
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    for label, ds in (("rle", rle), ("deflated", deflated)):
        img = decode_image(to_bytes(ds), f"ct_{label}.dcm")
        np.testing.assert_allclose(img.pixels, expected * 1.0 + float(original.RescaleIntercept), atol=1e-3, err_msg=label)


def test_jpeg2000_without_pillow_codec_is_a_clear_error(dicom_dir, monkeypatch):
    monkeypatch.setattr(dicom_module, "pillow_has_jpeg2000", lambda: False)
    with pytest.raises(ImageFormatError, match=r"MR_small_jp2klossless.dcm: transfer syntax JPEG 2000 .* needs a JPEG 2000 decoder"):
        decode_image((dicom_dir / "MR_small_jp2klossless.dcm").read_bytes(), "MR_small_jp2klossless.dcm")


@pytest.mark.parametrize(
    "name,message",
    [
        ("MR_small_jpeg_ls_lossless.dcm", r"transfer syntax JPEG-LS Lossless Image Compression \(1.2.840.10008.1.2.4.80\) cannot be decoded"),
        ("SC_rgb_jpeg_gdcm.dcm", r"transfer syntax JPEG Lossless, Non-Hierarchical.*cannot be decoded"),
        ("JPGExtended.dcm", "JPEG Extended with 12-bit samples cannot be decoded"),
        ("MR_truncated.dcm", "cannot decode the Explicit VR Little Endian pixel data: ValueError"),
        ("rtplan.dcm", r"has no Pixel Data \(7FE0,0010\)"),
        ("GDCMJ2K_TextGBR.dcm", "cannot decode the JPEG 2000 Image Compression"),
    ],
)
def test_undecodable_files_name_file_and_reason(dicom_dir, name, message):
    with pytest.raises(ImageFormatError, match=f"{name}: .*{message}" if not message.startswith("transfer") else f"{name}: {message}"):
        decode_image((dicom_dir / name).read_bytes(), name)


def test_truncated_header_and_garbage(dicom_dir):
    data = (dicom_dir / "MR_small.dcm").read_bytes()
    with pytest.raises(ImageFormatError, match="cut.dcm: "):
        decode_image(data[:400], "cut.dcm")
    with pytest.raises(ImageFormatError, match="junk.dcm: "):
        decode_image(b"\x00" * 128 + b"DICM" + b"\xff" * 50, "junk.dcm")


def test_declared_size_cap_refuses_bombs(dicom_dir, monkeypatch):
    ds = pydicom.dcmread(dicom_dir / "MR_small_RLE.dcm")
    ds.NumberOfFrames = 100000  # declares 100000 frames of 64 x 64 x 2 bytes = 819 MB
    with pytest.raises(ImageFormatError, match=r"bomb.dcm: declared pixel data of 819200000 bytes .* exceeds the limit"):
        decode_image(to_bytes(ds), "bomb.dcm")
    monkeypatch.setattr(decode, "MAX_PIXELS", 1000)
    with pytest.raises(ImageFormatError, match="big.dcm: image of 64 x 64 = 4096 pixels exceeds the limit of 1000 pixels"):
        decode_image((dicom_dir / "MR_small.dcm").read_bytes(), "big.dcm")


def test_phi_is_kept_apart(dicom_dir):
    name = "CT_small.dcm"
    ds = pydicom.dcmread(dicom_dir / name)
    img = decode_image((dicom_dir / name).read_bytes(), name)
    assert img.phi["PatientName"] == str(ds.PatientName)
    assert img.phi["PatientID"] == str(ds.PatientID)
    text = repr(img) + repr(img.metadata)
    for value in (str(ds.PatientName), str(ds.PatientID), str(ds.StudyInstanceUID)):
        assert value not in text
    assert not set(img.metadata) & set(dicom_module.PHI_KEYWORDS)


def test_thumbnail_is_windowed_png(dicom_dir):
    from PIL import Image

    img = decode_image((dicom_dir / "MR_small.dcm").read_bytes(), "MR_small.dcm")
    thumb = Image.open(io.BytesIO(make_thumbnail(img, max_side=32)))
    assert thumb.format == "PNG" and thumb.size == (32, 32) and thumb.mode == "L"


# ---- regressions from the hostile corpus / fuzzing (docs/robustness.md) ---------------------------


def test_text_named_dcm_is_not_a_dicom_file():
    with pytest.raises(ImageFormatError, match=r"notes.dcm: not a DICOM file: no 'DICM' prefix at byte 128"):
        decode_image(b"Not a DICOM file, just text.\n" * 8, "notes.dcm")


def test_bare_dataset_without_preamble_still_decodes(dicom_dir):
    """The not-a-DICOM check must keep accepting a real data set written without preamble / meta."""
    expected = pydicom.dcmread(dicom_dir / "MR_small.dcm").pixel_array  # MR_small has no rescale
    ds = pydicom.dcmread(dicom_dir / "MR_small.dcm")
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=False, little_endian=True)
    assert buffer.getvalue()[128:132] != b"DICM"
    image = decode_image(buffer.getvalue(), "bare.dcm")
    assert "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds
    np.testing.assert_array_equal(image.pixels, expected)


@pytest.mark.parametrize("keep", [132, 150, 200, 300])
def test_cut_inside_the_file_meta_is_truncated(dicom_dir, keep):
    data = (dicom_dir / "MR_small.dcm").read_bytes()
    with pytest.raises(ImageFormatError, match=r"cut.dcm: truncated DICOM file"):
        decode_image(data[:keep], "cut.dcm")


def test_corrupt_element_met_lazily_names_the_element(dicom_dir):
    """pydicom converts elements on first access; a bad VR deep in the data set (here the Modality,
    which only the metadata reads) is reported at decode time, naming the element."""
    data = (dicom_dir / "MR_small.dcm").read_bytes()
    at = data.index(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality, explicit VR 'CS'
    corrupt = data[:at + 4] + b"QQ" + data[at + 6:]
    with pytest.raises(ImageFormatError, match=r"vr.dcm: corrupt DICOM element \(0008,0060\) Modality: "
                                               r"NotImplementedError"):
        decode_image(corrupt, "vr.dcm")


def test_non_numeric_rescale_slope_names_the_attribute(dicom_dir):
    data = (dicom_dir / "CT_small.dcm").read_bytes()
    at = data.index(b"\x28\x00\x53\x10DS\x02\x00")  # (0028,1053) Rescale Slope, 2 bytes
    corrupt = data[:at + 8] + b"x " + data[at + 10:]
    with pytest.raises(ImageFormatError, match=r"slope.dcm: DICOM attribute RescaleSlope has a non-numeric value"):
        decode_image(corrupt, "slope.dcm")


def test_wrong_meta_group_length_in_a_complete_file_still_decodes(dicom_dir):
    """The cut-inside-the-meta check runs only when pydicom finds no pixel data: a complete file whose
    (0002,0000) group length is wrong is still shown (pydicom reads the meta element by element)."""
    data = bytearray((dicom_dir / "MR_small.dcm").read_bytes())
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    data[140:144] = (0xFFFF).to_bytes(4, "little")
    image = decode_image(bytes(data), "group_length.dcm")
    np.testing.assert_array_equal(image.pixels, pydicom.dcmread(dicom_dir / "MR_small.dcm").pixel_array)
