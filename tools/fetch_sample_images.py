"""Fetch real sample photos for the imaging tests from scikit-image's wheel on PyPI.

scikit-image ships a few images inside its wheel (``skimage/data/``). We download the pinned wheel
with pip (PyPI only, no other network), check its sha256, extract the images listed below into
``.cache/samples/skimage/`` and check each file's sha256. Nothing is committed to the repository.

Usage: python tools/fetch_sample_images.py [--dest .cache/samples]
Licences (scikit-image data docs): retina.jpg and ihc.png public domain (Wikimedia Commons),
camera.png and chelsea.png CC0, logo.png and multipage.tif scikit-image (BSD-3-Clause).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SKIMAGE_VERSION = "0.24.0"
WHEEL_NAME = f"scikit_image-{SKIMAGE_VERSION}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c"
SAMPLES = {
    "retina.jpg": "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",  # fundus photo, JPEG RGB
    "ihc.png": "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",  # histology, PNG RGB
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",  # PNG 8-bit gray
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",  # PNG RGB, non-square
    "logo.png": "f2c57fe8af089f08b5ba523d95573c26e62904ac5967f4c8851b27d033690168",  # PNG RGBA
    "multipage.tif": "4da0ad0d3df4807a9847247d1b5e565b50d46481f643afb5c37c14802c78130f",  # 2-page TIFF gray
}
DEFAULT_DEST = Path(__file__).resolve().parents[1] / ".cache" / "samples"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(dest: Path = DEFAULT_DEST) -> Path:
    """Make sure every sample is in ``dest/skimage`` with the pinned hash; return that folder."""
    target = dest / "skimage"
    if all((target / n).is_file() and sha256((target / n).read_bytes()) == h for n, h in SAMPLES.items()):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
             "--platform", "manylinux_2_17_x86_64", f"scikit-image=={SKIMAGE_VERSION}", "-d", tmp, "-q"],
            check=True,
        )
        wheel = Path(tmp) / WHEEL_NAME
        if sha256(wheel.read_bytes()) != WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name}: sha256 mismatch (expected {WHEEL_SHA256})")
        with zipfile.ZipFile(wheel) as archive:
            for name, expected in SAMPLES.items():
                data = archive.read(f"skimage/data/{name}")
                if sha256(data) != expected:
                    raise RuntimeError(f"skimage/data/{name}: sha256 mismatch (expected {expected})")
                (target / name).write_bytes(data)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args(argv)
    print(fetch(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
