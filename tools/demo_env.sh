#!/usr/bin/env bash
# Create the pinned TensorFlow environment used only to (re)build the Vitrine demo model
# (tools/make_demo_model.py). It lives in /opt/demoenv, apart from the project's .venv,
# because TensorFlow is far too heavy for the app's own test environment.
#
# Usage: bash tools/demo_env.sh            # idempotent; DEMO_ENV=/other/path to relocate
set -euo pipefail

DEMO_ENV="${DEMO_ENV:-/opt/demoenv}"
PYTHON="${PYTHON:-python3.11}"

if [ ! -x "$DEMO_ENV/bin/python" ]; then
  "$PYTHON" -m venv "$DEMO_ENV"
fi
PIP=("$DEMO_ENV/bin/python" -m pip install --disable-pip-version-check -q)

# numpy / Pillow match the versions Pyodide 0.27.7 ships, so decoding here matches the browser.
"${PIP[@]}" \
  "tensorflow-cpu==2.21.0" \
  "tf-keras==2.21.0" \
  "numpy==2.0.2" \
  "pillow==10.2.0" \
  "opencv-python-headless==4.10.0.84" \
  "pydicom==3.0.1" \
  "nibabel==5.3.2" \
  "packaging==24.2" \
  "six==1.17.0" \
  "importlib_resources==6.4.5"

# tensorflowjs pins jax, flax, tensorflow-decision-forests and tensorflow-hub, none of which the
# Keras-layers converter needs; make_demo_model.py stubs those imports instead.
"${PIP[@]}" --no-deps "tensorflowjs==4.22.0"

"$DEMO_ENV/bin/python" - <<'PY'
import tensorflow as tf, tf_keras, numpy, PIL, cv2, pydicom, nibabel
print("demoenv ok: tensorflow", tf.__version__, "tf_keras", tf_keras.__version__,
      "numpy", numpy.__version__, "pillow", PIL.__version__, "cv2", cv2.__version__,
      "pydicom", pydicom.__version__)
PY
