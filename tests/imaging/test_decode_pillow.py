"""Ordinary formats through Pillow, on real photos from scikit-image's wheel. Expected arrays come
from Pillow reading the same bytes (or numpy transforms written here), never from our decoder."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import ImageFormatError
from app.imaging import decode, decode_image, display_image, make_thumbnail, preprocess, PreprocessSpec


def encode(array_or_image, fmt, **params):
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ihc(photo_dir):
    return np.asarray(Image.open(photo_dir / "ihc.png").convert("RGB"))


@pytest.mark.parametrize("fmt,params", [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("TIFF", {"compression": "tiff_deflate"})])
def test_lossless_formats_roundtrip(ihc, fmt, params):
    img = decode_image(encode(ihc, fmt, **params), f"ihc.{fmt.lower()}")
    np.testing.assert_array_equal(img.pixels, ihc)
    np.testing.assert_array_equal(img.display, ihc)
    assert img.metadata["format"] == fmt and img.metadata["bits"] == 8


@pytest.mark.parametrize("name", ["retina.jpg", "camera.png", "chelsea.png"])
def test_shipped_photos_match_pillow(photo_dir, name):
    data = (photo_dir / name).read_bytes()
    expected = np.asarray(Image.open(io.BytesIO(data)))
    img = decode_image(data, name)
    np.testing.assert_array_equal(img.pixels, expected)
    assert img.display.dtype == np.uint8


def test_lossy_jpeg_and_webp_match_pillow_decode(ihc):
    for fmt in ("JPEG", "WEBP"):
        data = encode(ihc, fmt, quality=85)
        np.testing.assert_array_equal(decode_image(data, "x").pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_gray8_and_gray16(photo_dir):
    camera = np.asarray(Image.open(photo_dir / "camera.png"))
    img = decode_image(encode(camera, "PNG"), "camera.png")
    assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 2
    np.testing.assert_array_equal(img.display, camera)
    # a real 16-bit grayscale PNG: camera spread over 12 bits
    wide = camera.astype(np.uint16) * 16 + 7
    data = encode(Image.fromarray(wide, mode="I;16"), "PNG")
    img16 = decode_image(data, "camera16.png")
    assert img16.pixels.dtype == np.uint16 and img16.metadata["bits"] == 16
    np.testing.assert_array_equal(img16.pixels, wide)
    x = wide.astype(np.float64)
    np.testing.assert_array_equal(img16.display, np.rint((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8))
    windowed = decode_image(data, "camera16.png", window=(2048, 1024))
    lo, hi = 2048 - 0.5 - 1023 / 2, 2048 - 0.5 + 1023 / 2
    expected = np.where(x <= lo, 0, np.where(x > hi, 255, ((x - 2047.5) / 1023 + 0.5) * 255))
    np.testing.assert_array_equal(windowed.display, np.clip(np.rint(expected), 0, 255).astype(np.uint8))


def test_palette_and_alpha(photo_dir, ihc):
    palette = Image.fromarray(ihc).quantize(64)
    img = decode_image(encode(palette, "PNG"), "pal.png")
    np.testing.assert_array_equal(img.pixels, np.asarray(palette.convert("RGB")))
    logo = Image.open(photo_dir / "logo.png")
    assert logo.mode == "RGBA"
    img = decode_image((photo_dir / "logo.png").read_bytes(), "logo.png")
    np.testing.assert_array_equal(img.pixels, np.asarray(logo))
    np.testing.assert_array_equal(img.display, np.asarray(logo.convert("RGB")))  # alpha dropped like Pillow/AUCMEDI
    x = preprocess(img, PreprocessSpec(size=(500, 500), standardize=None))
    np.testing.assert_array_equal(x[0], np.asarray(logo.convert("RGB")).astype(np.float32))


@pytest.mark.parametrize("orientation,transform", [(3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                                                   (8, lambda a: np.rot90(a, 1)), (2, lambda a: a[:, ::-1])])
def test_exif_orientation_is_applied(ihc, orientation, transform):
    base = Image.fromarray(ihc[:, :300])  # not square so rotations show
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(base, "JPEG", quality=95, exif=exif.tobytes())
    stored = np.asarray(Image.open(io.BytesIO(data)))  # pixels as stored, orientation not applied
    img = decode_image(data, "oriented.jpg")
    np.testing.assert_array_equal(img.pixels, transform(stored))
    assert img.metadata["exif_orientation"] == orientation


def test_multipage_tiff_frames(photo_dir):
    data = (photo_dir / "multipage.tif").read_bytes()
    reader = Image.open(io.BytesIO(data))
    reader.seek(1)
    second = np.asarray(reader)
    img = decode_image(data, "multipage.tif", frame=1)
    np.testing.assert_array_equal(img.pixels, second)
    assert img.metadata["frames"] == 2
    with pytest.raises(ImageFormatError, match=r"multipage.tif: frame 2 out of range: the file has 2 frame\(s\)"):
        decode_image(data, "multipage.tif", frame=2)


def test_thumbnail_and_display_png(photo_dir):
    img = decode_image((photo_dir / "chelsea.png").read_bytes(), "chelsea.png")
    thumb = Image.open(io.BytesIO(make_thumbnail(img, 128)))
    assert thumb.format == "PNG" and max(thumb.size) == 128 and thumb.size[0] > thumb.size[1]
    full = Image.open(io.BytesIO(display_image(img)))
    np.testing.assert_array_equal(np.asarray(full), img.display)
    with pytest.raises(ImageFormatError, match="max_side must be >= 1"):
        make_thumbnail(img, 0)


# --- bad input ----------------------------------------------------------------------------------


def _png_with_size(width, height):
    """A valid PNG signature + IHDR declaring width x height (CRC correct), then a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 8)) + chunk(b"IEND", b"")


def test_bad_inputs_each_get_a_clear_error(ihc):
    png = encode(ihc, "PNG")
    jpeg = encode(ihc, "JPEG")
    cases = [
        (b"", "empty.png", "the file is empty"),
        (b"this is just text, not an image\n" * 5, "notes.png", "not a recognised image"),
        (png[: len(png) // 3], "truncated.png", "truncated or corrupt PNG data"),
        (jpeg[:200], "cut.jpg", "truncated or corrupt JPEG data|corrupt"),
        (png[:40] + bytes(b ^ 0x5A for b in png[40:400]) + png[400:], "garbled.png", "corrupt"),
        (_png_with_size(200_000, 200_000), "bomb.png", "decompression bomb"),
        (_png_with_size(0, 10), "zero.png", "corrupt|zero-size|not a recognised"),
    ]
    for data, name, message in cases:
        with pytest.raises(ImageFormatError, match=f"^{name}: .*({message})"):
            decode_image(data, name)


def test_our_pixel_cap_below_pillows(monkeypatch, ihc):
    monkeypatch.setattr(decode, "MAX_PIXELS", 10_000)
    with pytest.raises(ImageFormatError, match=r"ihc.png: image of 512 x 512 = 262144 pixels exceeds the limit of 10000 pixels"):
        decode_image(encode(ihc, "PNG"), "ihc.png")


def test_bad_window_option(ihc):
    with pytest.raises(ImageFormatError, match=r"x.png: window width must be a finite number >= 1"):
        decode_image(encode(ihc, "PNG"), "x.png", window=(10, 0))
    with pytest.raises(ImageFormatError, match=r"x.png: window must be \(center, width\) numbers"):
        decode_image(encode(ihc, "PNG"), "x.png", window=("a", "b"))


def test_batch_with_one_corrupt_file_keeps_the_others(photo_dir, dicom_dir, nifti_dir):
    batch = [
        ("retina.jpg", (photo_dir / "retina.jpg").read_bytes()),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30),
        ("MR_small.dcm", (dicom_dir / "MR_small.dcm").read_bytes()),
        ("anatomical.nii", (nifti_dir / "anatomical.nii").read_bytes()),
    ]
    decoded, errors = {}, {}
    for name, data in batch:
        try:
            decoded[name] = decode_image(data, name)
        except ImageFormatError as exc:
            errors[name] = str(exc)
    assert set(decoded) == {"retina.jpg", "MR_small.dcm", "anatomical.nii"}
    assert list(errors) == ["broken.png"] and errors["broken.png"].startswith("broken.png: ")


def test_signature_wins_over_a_misleading_extension(ihc):
    img = decode_image(encode(ihc, "PNG"), "really_a_png.dcm")
    assert img.metadata["format"] == "PNG"
    np.testing.assert_array_equal(img.pixels, ihc)
