"""Runs inside Pyodide 0.27.7 (see test_imaging_pyodide.py): decode + preprocess sample files and
print one JSON line with, per file, the sha256 of the display image and of the float32 tensor, or
the ImageFormatError text. The repository is mounted at /repo."""

import hashlib
import json
import sys

import numpy as np
from PIL import features

from app.errors import ImageFormatError
from app.imaging import PreprocessSpec, decode_image, preprocess

SPECS = [PreprocessSpec(size=(224, 224), resize_mode=k, standardize=mode)
         for k, mode in ((0, "torch"), (1, "tf"), (2, "caffe"), (3, "z-score"), (4, "minmax"))]


def summarise(paths):
    report = {"platform": sys.platform, "jpg_2000": bool(features.check("jpg_2000")), "files": {}}
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        try:
            img = decode_image(open(path, "rb").read(), name)
        except ImageFormatError as exc:
            report["files"][name] = {"error": str(exc)}
            continue
        tensors = [preprocess(img, spec) for spec in SPECS]
        report["files"][name] = {
            "display": hashlib.sha256(np.ascontiguousarray(img.display).tobytes()).hexdigest(),
            "tensors": [hashlib.sha256(t.tobytes()).hexdigest() for t in tensors],
        }
    return report


if __name__ == "__main__":
    print(json.dumps(summarise(sys.argv[1:])))
