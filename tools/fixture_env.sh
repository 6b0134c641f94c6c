#!/usr/bin/env bash
# Recreate the framework environments that generate the TF.js fixtures (never the app's .venv):
#   /opt/tfenv      Python 3.11 venv: TensorFlow 2.21 (CPU), tf_keras 2.21, Keras 3.15,
#                   tensorflowjs 4.22 converter (installed --no-deps: its jax/flax/TF-DF/TF-Hub
#                   requirements are only used by other converters; tools/_tfjs_fixture_lib.py
#                   stubs those modules at import time).
#   $TFJS_NODE_DIR  (default /tmp/tfjsnode) scratch npm project with @tensorflow/tfjs 4.22.0 for
#                   the second oracle (TF.js cpu backend in Node); not part of the repo.
# Usage: bash tools/fixture_env.sh            (idempotent; TFENV=/path to change the venv)
set -euo pipefail
cd "$(dirname "$0")/.."

TFENV="${TFENV:-/opt/tfenv}"
TFJS_NODE_DIR="${TFJS_NODE_DIR:-/tmp/tfjsnode}"
PYTHON="${PYTHON:-python3.11}"

if [ ! -x "$TFENV/bin/python" ]; then
    "$PYTHON" -m venv "$TFENV"
fi
# Exact versions of everything the generators import (pip freeze of a working env).
"$TFENV/bin/pip" install --quiet \
    tensorflow-cpu==2.21.0 tensorflow==2.21.0 tf-keras==2.21.0 keras==3.15.1 \
    numpy==2.4.6 h5py==3.14.0 six==1.17.0 packaging==26.3 ml_dtypes==0.6.0 \
    protobuf==7.36.2 absl-py==2.5.1 astunparse==1.6.3 flatbuffers==25.12.19 gast==0.7.0 \
    google-pasta==0.2.0 grpcio==1.85.1 libclang==18.1.1 opt_einsum==3.4.0 optree==0.20.0 \
    namex==0.1.0 rich==15.0.0 termcolor==3.3.0 typing_extensions==4.16.0 wrapt==2.5.2 \
    requests==2.34.2 urllib3==2.8.0 certifi==2026.10.18 idna==3.20 \
    charset-normalizer==3.5.2 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0
"$TFENV/bin/pip" install --quiet --no-deps tensorflowjs==4.22.0

if command -v npm >/dev/null 2>&1; then
    mkdir -p "$TFJS_NODE_DIR"
    if [ ! -f "$TFJS_NODE_DIR/node_modules/@tensorflow/tfjs/package.json" ]; then
        (cd "$TFJS_NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } \
            && npm install --no-audit --no-fund @tensorflow/tfjs@4.22.0)
    fi
else
    echo "npm not found: the TF.js-in-Node oracle will be skipped" >&2
fi

"$TFENV/bin/python" - <<'PY'
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import sys
sys.path.insert(0, "tools")
import _tfjs_fixture_lib as lib
print(f"tensorflow {lib.TF_VERSION}  keras {lib.KERAS3_VERSION}  tf_keras {lib.TF_KERAS_VERSION}"
      f"  tensorflowjs {lib.TFJS_VERSION}")
PY
