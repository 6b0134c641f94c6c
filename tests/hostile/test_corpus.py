"""Every file of the hostile corpus, through every public entry point it can reach, yields exactly
the VitrineError subclass its MANIFEST entry names, with a message that names the file and says
the reason, within a time bound and without blowing the memory bound.

Expectations (class + reason pattern) live in tests/hostile/corpus/MANIFEST.json and were written
from what a user must be told (tools/make_hostile_corpus.py), not from what the code says.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

import app.errors
from hostile_isolation import CORPUS, ENTRY_CALLS, FORK_AVAILABLE, load_manifest, run_isolated

pytestmark = pytest.mark.skipif(not FORK_AVAILABLE, reason="the isolation harness needs os.fork (POSIX)")

#: A hostile file must be refused within this many seconds (the child is killed at KILL_AFTER).
TIME_BOUND = float(os.environ.get("VITRINE_HOSTILE_TIME_BOUND", "5"))
KILL_AFTER = 3 * TIME_BOUND
#: Resident memory a refusal may add on top of the process it runs in.
MEMORY_BOUND_MB = 512
MAX_CORPUS_BYTES = 2_000_000

#: Known bugs: (file, entry label) -> the bug and the module owner. strict: fixing one flips the test.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _cases():
    if not (CORPUS / "MANIFEST.json").is_file():
        return []
    cases = []
    for entry in load_manifest()["files"]:
        for label, function in ENTRY_CALLS[entry["entry"]]:
            marks = []
            bug = KNOWN_BUGS.get((entry["file"], label))
            if bug:
                marks.append(pytest.mark.xfail(strict=True, reason=bug))
            cases.append(pytest.param(entry, label, function, marks=marks, id=f"{entry['file']}-{label}"))
    return cases


def _expected_class(name: str) -> type:
    cls = getattr(app.errors, name, None)
    if cls is None:  # a few live beside their module (e.g. service errors)
        raise AssertionError(f"MANIFEST names error class {name!r}, which app.errors does not define")
    return cls


def check_refusal(entry: dict, outcome, where: str, memory_bound_mb: float = MEMORY_BOUND_MB) -> None:
    """The shared judgement: right class, names the file, says the reason, in time, in memory."""
    name = entry["file"]
    assert outcome.kind == "raised", f"{name} via {where}: expected {entry['error']}, but it {outcome.describe()}"
    expected = _expected_class(entry["error"])
    expected_path = f"{expected.__module__}.{expected.__qualname__}"
    assert outcome.is_vitrine_error(), (
        f"{name} via {where}: a non-VitrineError escaped (a bug): {outcome.error_type}: {outcome.message}\n"
        f"{outcome.traceback}")
    assert expected_path in outcome.error_mro, (
        f"{name} via {where}: expected {entry['error']}, got {outcome.error_type}: {outcome.message}")
    assert name in outcome.message, f"{name} via {where}: the message does not name the file: {outcome.message!r}"
    # the reason must be in the words, not in the file name (names like 'png_truncated_half.png')
    words = outcome.message.replace(str(CORPUS / name), "").replace(name, "")
    assert re.search(entry["reason"], words, re.IGNORECASE), (
        f"{name} via {where}: the message does not say why (/{entry['reason']}/): {outcome.message!r}")
    assert outcome.seconds < TIME_BOUND, f"{name} via {where}: took {outcome.seconds:.1f} s (bound {TIME_BOUND} s)"
    if outcome.peak_extra_mb is not None:
        assert outcome.peak_extra_mb < memory_bound_mb, (
            f"{name} via {where}: peak resident memory grew by {outcome.peak_extra_mb:.0f} MB (bound {memory_bound_mb})")


@pytest.mark.parametrize("entry, label, function", _cases())
def test_hostile_file_is_refused_with_a_clear_error(entry, label, function):
    outcome = run_isolated(function, str(CORPUS / entry["file"]), timeout=KILL_AFTER)
    check_refusal(entry, outcome, label)


def test_manifest_lists_exactly_the_corpus(manifest):
    listed = {entry["file"] for entry in manifest["files"]}
    on_disk = {p.name for p in CORPUS.iterdir() if p.is_file() and p.name != "MANIFEST.json"}
    assert listed == on_disk, f"unlisted: {sorted(on_disk - listed)}, missing: {sorted(listed - on_disk)}"
    for entry in manifest["files"]:
        assert (CORPUS / entry["file"]).stat().st_size == entry["bytes"], entry["file"]
        assert entry["entry"] in ENTRY_CALLS, entry
        assert issubclass(_expected_class(entry["error"]), app.errors.VitrineError), entry
        re.compile(entry["reason"])
        assert entry["how"] and entry["made_from"], entry


def test_corpus_is_small():
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < MAX_CORPUS_BYTES, f"corpus is {total} bytes; keep it under {MAX_CORPUS_BYTES}"


def test_corpus_covers_the_issue_checklist(manifest):
    """Issue 9's list of hostile kinds, each present at least once."""
    names = " ".join(entry["file"] for entry in manifest["files"])
    for needle in ("png_truncated", "png_bitflip", "jpeg_truncated", "dicom_truncated", "nifti_truncated",
                   "nifti_gz_truncated", "nifti_gz_bitflip", "text_named.png", "empty.png", "png_bomb",
                   "dicom_bomb_rows", "dicom_bomb_frames", "nifti_bomb_shape", "zip_bomb", "zip_bomb_lying_header",
                   "zip_many_entries", "zip_path_traversal", "zip_absolute_name", "model_not_json",
                   "model_missing_topology", "model_weight_shape_wrong", "model_nan_weights", "model_huge_weight_shape",
                   "model_graph_model", "model_lambda_layer", "model_unknown_layer", "tflite_quant_truncated",
                   "tflite_wrong_identifier", "tflite_root_offset_out_of_range", "tflite_buffers_length_2pow31"):
        assert needle in names, f"corpus lacks a {needle} case"


# ------------------------------------------------------------------ the seeds are good inputs

GOOD = CORPUS / "good"


@pytest.mark.parametrize("name", ["camera.png", "retina.jpg", "chelsea.png", "MR_small.dcm",
                                  "resampled_anat_moved.nii", "standard.nii.gz"])
def test_good_image_seed_decodes(name):
    """The damage is the only thing wrong with a bad file: its seed decodes."""
    from app.imaging import PreprocessSpec, decode_image, preprocess

    if name.endswith((".dcm",)):
        pytest.importorskip("pydicom")
    if ".nii" in name:
        pytest.importorskip("nibabel")
    image = decode_image((GOOD / name).read_bytes(), name)
    x = preprocess(image, PreprocessSpec(size=(24, 24), channels=3))
    assert x.shape == (1, 24, 24, 3) and x.dtype.name == "float32"


@pytest.mark.parametrize("name", ["model.zip", "model_quant.tflite", "model_float.tflite"])
def test_good_model_seed_loads(name):
    import app as vitrine

    model = vitrine.load_model(str(GOOD / name))
    assert hasattr(model, "predict")


def test_good_model_seed_is_the_committed_fixture():
    """good/model.zip holds exactly tests/fixtures/tfjs/k2_functional_classifier's model files."""
    from app.archive import read_zip

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "tfjs" / "k2_functional_classifier"
    members = read_zip((GOOD / "model.zip").read_bytes(), "model.zip")
    assert sorted(members) == ["group1-shard1of1.bin", "model.json"]
    for member, data in members.items():
        assert hashlib.sha256(data).digest() == hashlib.sha256((fixture / member).read_bytes()).digest(), member


@pytest.mark.slow
def test_generator_is_deterministic(tmp_path):
    """Re-running tools/make_hostile_corpus.py reproduces the committed corpus byte for byte."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, str(repo / "tools" / "make_hostile_corpus.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file():
            regenerated = tmp_path / path.relative_to(CORPUS)
            if path.name == "MANIFEST.json":
                assert json.loads(regenerated.read_text()) == json.loads(path.read_text())
            else:
                assert regenerated.read_bytes() == path.read_bytes(), path.name


def _nifti_gzip_bomb(path: str) -> None:
    """A .nii.gz whose header (the good seed's) declares a small volume, followed by 544 MB of
    zeros: made at test time because even compressed it is too big for the committed corpus."""
    import zlib

    header = (GOOD / "resampled_anat_moved.nii").read_bytes()
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # fastest; 2.5 MB on disk
    parts = [compressor.compress(header)]
    block = bytes(16 << 20)
    parts.extend(compressor.compress(block) for _ in range(34))  # 544 MB > the 512 MB cap
    parts.append(compressor.flush())
    Path(path).write_bytes(b"".join(parts))


def test_nifti_gzip_bomb_with_small_header(tmp_path):
    pytest.importorskip("nibabel")
    from app.imaging import MAX_DECODED_BYTES
    from hostile_isolation import call_decode_image

    bomb = tmp_path / "nifti_gzip_bomb_small_header.nii.gz"
    _nifti_gzip_bomb(str(bomb))
    entry = {"file": bomb.name, "error": "ImageFormatError", "reason": r"too large|exceeds|limit|decompression bomb"}
    outcome = run_isolated(call_decode_image, str(bomb), timeout=KILL_AFTER)
    # the header declares 4.5 KB, so the decoder inflates that plus its 1 MiB trailing allowance and
    # refuses (measured: +37 MB peak, most of it importing nibabel; was +1.0 GB before the fix)
    assert MAX_DECODED_BYTES / 2**20 > 128
    check_refusal(entry, outcome, "decode_image+preprocess", memory_bound_mb=128)
