#!/usr/bin/env bash
# Recreate the LiteRT oracle environment that generates the TFLite fixtures (never the app's .venv):
#   /opt/litertenv  Python 3.11 venv: tensorflow-cpu 2.21.0 (the TFLite converter), tf_keras 2.21.0
#                   (rebuilds Keras-2 TF.js layers-models such as the demo model; --no-deps, its
#                   only requirement is TensorFlow, installed here as tensorflow-cpu) and
#                   ai-edge-litert 2.3.0 (the interpreter whose BUILTIN_REF kernels are the oracle).
# Used by tools/make_tflite_fixtures.py, tools/make_tflite_page_fixtures.py and
# tests/zenodo/make_cli_expected_tflite.py.
# Usage: bash tools/litert_env.sh            (idempotent; LITERTENV=/path to change the venv)
set -euo pipefail
cd "$(dirname "$0")/.."

LITERTENV="${LITERTENV:-/opt/litertenv}"
PYTHON="${PYTHON:-python3.11}"

if [ ! -x "$LITERTENV/bin/python" ]; then
    "$PYTHON" -m venv "$LITERTENV"
fi
# Exact versions of everything the generators import (pip freeze of a working env).
"$LITERTENV/bin/pip" install --quiet \
    tensorflow-cpu==2.21.0 ai-edge-litert==2.3.0 keras==3.15.1 \
    numpy==2.4.6 h5py==3.14.0 ml_dtypes==0.6.0 protobuf==7.36.2 pillow==11.3.0 \
    absl-py==2.5.1 astunparse==1.6.3 backports.strenum==1.2.8 flatbuffers==25.12.19 gast==0.7.0 \
    google-pasta==0.2.0 grpcio==1.85.3 libclang==18.1.1 opt_einsum==3.4.0 optree==0.20.0 \
    namex==0.1.0 packaging==26.4 rich==15.0.0 six==1.17.0 termcolor==3.3.0 tqdm==4.70.1 \
    typing_extensions==4.16.0 wrapt==2.5.2 requests==2.34.2 urllib3==2.8.0 \
    certifi==2026.10.19.post1 idna==3.20 charset-normalizer==3.5.3 markdown-it-py==4.3.0 \
    mdurl==0.1.2 Pygments==2.21.0 opencv-python-headless==4.10.0.84
"$LITERTENV/bin/pip" install --quiet --no-deps tf-keras==2.21.0

TF_CPP_MIN_LOG_LEVEL=3 "$LITERTENV/bin/python" - <<'PY'
from importlib.metadata import version
print("  ".join(f"{name} {version(name)}" for name in ("tensorflow-cpu", "tf-keras", "ai-edge-litert", "numpy")))
PY
