"""NIfTI slices against nibabel's own ``get_fdata`` (files shipped in nibabel's tests/data)."""

import gzip
import io
import zlib

import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="nibabel is not installed")

from app.errors import ImageFormatError  # noqa: E402
from app.imaging import decode, decode_image  # noqa: E402
from app.imaging.nifti import gunzip_capped  # noqa: E402


def naive_minmax(x):
    x = np.asarray(x, np.float64)
    return np.clip(np.rint((x - x.min()) / (x.max() - x.min()) * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "name,version",
    [("anatomical.nii", 1), ("functional.nii", 1), ("example4d.nii.gz", 1), ("example_nifti2.nii.gz", 2), ("standard.nii.gz", 1)],
)
def test_default_middle_axial_slice_matches_get_fdata(nifti_dir, name, version):
    ref = nib.load(nifti_dir / name)
    volume = ref.get_fdata()
    if volume.ndim > 3:
        volume = volume[..., 0]
    k = volume.shape[2] // 2  # these files are stored with the axial axis last (LAS/RAS)
    img = decode_image((nifti_dir / name).read_bytes(), name)
    expected = np.rot90(volume[:, :, k])
    np.testing.assert_allclose(img.pixels, expected, rtol=1e-6, atol=1e-4)
    assert img.metadata["format"] == f"NIfTI-{version}"
    assert img.metadata["slice_axis"] == 2 and img.metadata["slice_index"] == k
    assert img.display.dtype == np.uint8 and img.display.shape == expected.shape


def test_scaled_data_and_header_display_range(nifti_dir):
    name = "functional.nii"  # scl_slope 0.0754, scl_inter 3100.76, cal_min/cal_max set
    ref = nib.load(nifti_dir / name)
    img = decode_image((nifti_dir / name).read_bytes(), name, slice_=(2, 1))
    plane = np.rot90(ref.get_fdata()[:, :, 1, 0])
    np.testing.assert_allclose(img.pixels, plane, rtol=1e-6)
    low, high = float(ref.header["cal_min"]), float(ref.header["cal_max"])
    expected = np.clip(np.rint((plane - low) / (high - low) * 255), 0, 255).astype(np.uint8)
    assert np.abs(img.display.astype(int) - expected.astype(int)).max() <= 1
    assert img.metadata["window_source"] == "header cal_min/cal_max"


def test_chosen_axis_and_min_max_display(nifti_dir):
    name = "anatomical.nii"
    volume = nib.load(nifti_dir / name).get_fdata()
    img = decode_image((nifti_dir / name).read_bytes(), name, slice_=(0, 10))
    expected = np.rot90(volume[10])
    np.testing.assert_allclose(img.pixels, expected, rtol=1e-6)
    np.testing.assert_array_equal(img.display, naive_minmax(expected))


@pytest.mark.parametrize(
    "slice_,message",
    [((3, 0), "slice axis must be 0, 1 or 2"), ((2, 25), r"slice index 25 out of range for axis 2: the volume has 25 slices"),
     (("a", 1), r"slice must be \(axis, index\)")],
)
def test_bad_slice(nifti_dir, slice_, message):
    with pytest.raises(ImageFormatError, match=f"anatomical.nii: {message}"):
        decode_image((nifti_dir / "anatomical.nii").read_bytes(), "anatomical.nii", slice_=slice_)


def test_truncated_and_corrupt(nifti_dir):
    data = (nifti_dir / "anatomical.nii").read_bytes()
    with pytest.raises(ImageFormatError, match="cut.nii: truncated NIfTI file"):
        decode_image(data[:1000], "cut.nii")
    with pytest.raises(ImageFormatError, match="short.nii: too short for a NIfTI header"):
        decode_image(data[:100], "short.nii")
    with pytest.raises(ImageFormatError, match="text.nii: not a NIfTI file"):
        decode_image(b"hello " * 100, "text.nii")
    gz = (nifti_dir / "example4d.nii.gz").read_bytes()
    with pytest.raises(ImageFormatError, match="cut.nii.gz: truncated gzip data"):
        decode_image(gz[: len(gz) // 2], "cut.nii.gz")


def test_gzip_bomb_is_refused(monkeypatch):
    bomb = gzip.compress(b"\x00" * 5_000_000)
    with pytest.raises(ImageFormatError, match="bomb.nii.gz: decompressed size exceeds the limit of 1000000 bytes"):
        gunzip_capped(bomb, "bomb.nii.gz", limit=1_000_000)
    monkeypatch.setattr(decode, "MAX_DECODED_BYTES", 1_000_000)
    with pytest.raises(ImageFormatError, match="bomb.nii.gz: decompressed size exceeds the limit"):
        decode_image(bomb, "bomb.nii.gz")


def test_declared_volume_cap(nifti_dir, monkeypatch):
    monkeypatch.setattr(decode, "MAX_DECODED_BYTES", 10_000)
    with pytest.raises(ImageFormatError, match=r"anatomical.nii: NIfTI data of 67650 bytes \(shape \(33, 41, 25\)\) exceeds the limit"):
        decode_image((nifti_dir / "anatomical.nii").read_bytes(), "anatomical.nii")


# ---- .nii.gz inflates only what its header declares (regression: docs/robustness.md) -------------


class _CountingZlib:
    """Stands in for the zlib module inside app.imaging.nifti and counts the bytes it inflates."""

    error = zlib.error

    def __init__(self):
        self.inflated = 0

    def decompressobj(self, *args, **kwargs):
        counter, real = self, zlib.decompressobj(*args, **kwargs)

        class Counting:
            def decompress(self, data, max_length=0):
                out = real.decompress(data, max_length)
                counter.inflated += len(out)
                return out

            def __getattr__(self, attribute):
                return getattr(real, attribute)

        return Counting()


@pytest.fixture()
def counting_zlib(monkeypatch):
    from app.imaging import nifti as nifti_module

    counter = _CountingZlib()
    monkeypatch.setattr(nifti_module, "zlib", counter)
    return counter


def test_small_header_then_zeros_is_refused_after_the_declared_size(nifti_dir, counting_zlib):
    plain = (nifti_dir / "anatomical.nii").read_bytes()  # 352 + 33 * 41 * 25 int16 voxels
    declared = 352 + 33 * 41 * 25 * 2
    assert len(plain) == declared
    bomb = gzip.compress(plain + bytes(8 << 20), compresslevel=1)
    with pytest.raises(ImageFormatError, match=r"bomb.nii.gz: the compressed file holds more than 1048576 bytes "
                                               r"beyond the 68002 bytes its NIfTI header declares"):
        decode_image(bomb, "bomb.nii.gz")
    assert counting_zlib.inflated <= declared + (1 << 20) + 1


def test_declared_size_over_the_cap_is_refused_from_the_header_alone(nifti_dir, counting_zlib, monkeypatch):
    monkeypatch.setattr(decode, "MAX_DECODED_BYTES", 10_000)
    gz = gzip.compress((nifti_dir / "anatomical.nii").read_bytes())
    with pytest.raises(ImageFormatError, match=r"big.nii.gz: NIfTI header declares 68002 bytes of data .* exceeds "
                                               r"the limit of 10000 bytes .*nothing was decompressed beyond the header"):
        decode_image(gz, "big.nii.gz")
    assert counting_zlib.inflated <= 540


def test_small_trailing_padding_is_accepted(nifti_dir):
    plain = (nifti_dir / "anatomical.nii").read_bytes()
    padded = decode_image(gzip.compress(plain + bytes(1000)), "padded.nii.gz")
    np.testing.assert_array_equal(padded.pixels, decode_image(plain, "anatomical.nii").pixels)


def test_gzip_crc_is_still_checked(nifti_dir):
    gz = bytearray(gzip.compress((nifti_dir / "anatomical.nii").read_bytes()))
    gz[-8] ^= 0xFF  # the CRC-32 of the uncompressed data (RFC 1952 trailer)
    with pytest.raises(ImageFormatError, match=r"crc.nii.gz: corrupt gzip data: .*incorrect data check"):
        decode_image(bytes(gz), "crc.nii.gz")


def test_nifti2_gz_declared_size(nifti_dir, counting_zlib, monkeypatch):
    gz = (nifti_dir / "example_nifti2.nii.gz").read_bytes()
    header = nib.Nifti2Header.from_fileobj(io.BytesIO(gzip.decompress(gz)))  # nibabel's reading of the header
    declared = int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    monkeypatch.setattr(decode, "MAX_DECODED_BYTES", declared - 1)
    with pytest.raises(ImageFormatError, match=rf"n2.nii.gz: NIfTI header declares {declared} bytes"):
        decode_image(gz, "n2.nii.gz")
    assert counting_zlib.inflated <= 540


def test_non_finite_affine_is_shown_with_a_note():
    """Regression (10 000-example fuzz run): NaN in srow_x made nibabel's SVD raise LinAlgError; the
    affine is degenerate, so the image is shown sliced along its last axis, orientation None."""
    import struct
    from pathlib import Path

    seed = Path(__file__).resolve().parents[1] / "hostile" / "corpus" / "good" / "resampled_anat_moved.nii"
    if not seed.is_file():
        pytest.skip(f"{seed} is absent")
    data = bytearray(seed.read_bytes())
    assert struct.unpack(">i", data[:4])[0] == 348  # big-endian seed
    struct.pack_into(">h", data, 254, 2)  # sform_code
    struct.pack_into(">f", data, 280, float("nan"))  # srow_x[0]
    image = decode_image(bytes(data), "nan_affine.nii")
    assert image.metadata["orientation"] is None and "non-finite" in image.metadata["orientation_note"]
    volume = nib.Nifti1Image.from_bytes(bytes(data)).get_fdata()
    np.testing.assert_allclose(image.pixels, np.rot90(volume[:, :, volume.shape[2] // 2]).astype(np.float32), rtol=1e-6)
