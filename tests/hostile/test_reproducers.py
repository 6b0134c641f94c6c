"""Minimal reproducers of bugs the fuzzers found (tests/fuzz), each a strict xfail naming the module
owner: when the bug is fixed the test passes, strict xfail turns that into a failure, and the
marker (and the matching entry in tests/fuzz/fuzz_harness.KNOWN_BUGS) must be removed. Fixed ones
stay here, unmarked, as regression tests.
"""

from __future__ import annotations

import pytest

from app.errors import ImageFormatError
from hostile_isolation import CORPUS

MR_SMALL = CORPUS / "good" / "MR_small.dcm"


def _mr_small() -> bytes:
    pytest.importorskip("pydicom")
    return MR_SMALL.read_bytes()


def test_dicom_unknown_vr_after_dcmread():
    data = _mr_small()
    at = data.index(b"\x08\x00\x16\x00UI")  # (0008,0016) SOP Class UID, explicit VR 'UI'
    corrupt = data[:at + 4] + b"TI" + data[at + 6:]
    with pytest.raises(ImageFormatError, match=r"vr_ti.dcm: corrupt DICOM element \(0008,0016\) SOPClassUID: "
                                               r"NotImplementedError: .*Value Representation 'TI'"):
        from app.imaging import decode_image

        decode_image(corrupt, "vr_ti.dcm")


def test_dicom_meta_length_not_multiple_of_4():
    data = _mr_small()
    at = data.index(b"\x02\x00\x00\x00UL\x04\x00")
    corrupt = data[:at + 6] + b"\x06\x00" + data[at + 8:]
    from app.imaging import decode_image

    try:
        decode_image(corrupt, "meta_len.dcm")
    except ImageFormatError as exc:
        assert "meta_len.dcm" in str(exc)
        assert "corrupt" in str(exc) and "(0002,0000)" in str(exc), str(exc)
    else:
        pytest.fail("a corrupt file meta group was decoded without error")


def test_nifti_degenerate_affine():
    import struct

    pytest.importorskip("nibabel")
    from app.imaging import decode_image

    data = bytearray((CORPUS / "good" / "resampled_anat_moved.nii").read_bytes())
    assert struct.unpack(">i", data[:4])[0] == 348  # the seed is big-endian
    struct.pack_into(">h", data, 254, 2)  # sform_code
    struct.pack_into(">12f", data, 280, *([0.0] * 12))  # srow_x, srow_y, srow_z
    # a clinician expects to see the image: it is shown, sliced along the array's last axis, and the
    # metadata says the orientation is unknown (app/imaging/nifti.py docstring)
    image = decode_image(bytes(data), "zero_affine.nii")
    assert image.metadata["orientation"] is None
    assert "degenerate" in image.metadata["orientation_note"]
    assert image.metadata["slice_axis"] == 2
    import io

    import nibabel
    import numpy as np

    volume = nibabel.Nifti1Image.from_stream(io.BytesIO(bytes(data))).get_fdata()
    expected = np.rot90(volume[:, :, volume.shape[2] // 2])
    np.testing.assert_allclose(image.pixels, expected.astype(np.float32), rtol=1e-6)


def test_service_chart_on_model_loaded_with_load_model():
    # fixed (was a strict xfail): a model loaded with 'load_model' had no card, so 'chart' /
    # 'export_results' / 'classify' with its handle raised InternalError KeyError: 'm1'
    from app.service import EngineService

    service = EngineService()
    if "chart" not in service.calls:
        pytest.skip("this build's service has no 'chart' call")
    loaded = service.handle({"call": "load_model", "args": {"name": "model.zip"}},
                            (CORPUS / "good" / "model.zip").read_bytes())
    assert loaded["ok"], loaded
    reply = service.handle({"call": "chart", "args": {"model": loaded["result"]["model"], "kind": "bars",
                                                       "probabilities": [0.2, 0.2, 0.2, 0.2, 0.2]}})
    assert reply["ok"] or reply["error"]["internal"] is False, reply["error"]


def test_tflite_fully_connected_with_one_input():
    import struct
    import sys
    from pathlib import Path

    from app.errors import ModelFormatError
    from app.tflite import load

    tools = Path(__file__).resolve().parents[2] / "tools"
    sys.path.insert(0, str(tools))
    try:
        from make_hostile_corpus import FlatBuffer
    finally:
        sys.path.remove(str(tools))
    data = (CORPUS / "good" / "model_float.tflite").read_bytes()
    fb = FlatBuffer(data)
    subgraph = fb.vector_element(fb.deref(fb.field(fb.root(), 2)), 0)
    operator = fb.vector_element(fb.deref(fb.field(subgraph, 3)), 18)  # the FULLY_CONNECTED head
    inputs = fb.deref(fb.field(operator, 1))
    assert fb.u32(inputs) == 3
    corrupt = bytearray(data)
    struct.pack_into("<I", corrupt, inputs, 1)  # inputs (x, W, b) -> (x)
    with pytest.raises(ModelFormatError, match=r"fc_one_input.tflite: subgraph 0 operator #18 \(FULLY_CONNECTED\): "
                                               r"FULLY_CONNECTED expects 2 to 3 input tensor\(s\), received 1"):
        load(bytes(corrupt), "fc_one_input.tflite")
