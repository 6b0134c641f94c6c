"""The Zenodo -> model -> prediction -> CSV path run *inside Pyodide 0.27.7* (no pytest there).

    node tools/pyodide_node/run_in_pyodide.mjs --index-url DIR --repo . --packages numpy,pillow \\
        --script tests/zenodo/pyodide_check.py

Pyodide has no sockets, so an in-memory :class:`app.http.Transport` plays Zenodo (the same
record JSON shape as the fake server); everything else is the code the browser worker will run:
resolve (concept id -> newest version, 429 retry), verified download with progress, unzip,
engine load, imaging, prediction, CSV. Probabilities are compared with TensorFlow's
(``data/cli_png/expected.npz``). Prints one JSON line; exits 1 on any failure.
"""

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path("/repo") if Path("/repo/app").is_dir() else Path(__file__).resolve().parents[2]
CASE = REPO / "tests" / "fixtures" / "tfjs" / "k2_sequential_cnn"
PNG_DIR = REPO / "tests" / "zenodo" / "data" / "cli_png"
BASE = "https://zenodo.example"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CLASSES = ["alpha", "beta", "gamma", "delta", "epsilon"]

from app.http import Response  # noqa: E402
from app.imaging import PreprocessSpec, decode_image, preprocess  # noqa: E402
from app.results import PredictionResult, to_csv  # noqa: E402
from app.sources import open_model, resolve  # noqa: E402
from app.zenodo import ZenodoClient  # noqa: E402

buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w") as archive:
    for name in ("model.json", "group1-shard1of1.bin"):
        archive.writestr(name, (CASE / name).read_bytes())
    archive.writestr("model-card.json", json.dumps({"name": "Tiny CNN", "classes": CLASSES, "input_size": [16, 16],
                                                     "channels": 3, "standardize": None}))
MODEL_ZIP = buffer.getvalue()
RECORD = {
    "id": 11, "conceptrecid": "10", "doi": "10.5281/zenodo.11",
    "metadata": {"title": "Tiny", "version": "1.1", "license": {"id": "cc-by-4.0"}},
    "files": [{"key": "model.tfjs.zip", "size": len(MODEL_ZIP), "checksum": "md5:" + hashlib.md5(MODEL_ZIP).hexdigest(),
               "links": {"self": f"{BASE}/api/records/11/files/model.tfjs.zip/content"}}],
}


class MemoryTransport:
    """Answers like Zenodo: concept 10 -> 404 then search; one 429 first; file in 3 chunks."""

    def __init__(self):
        self.urls = []

    def get(self, url, *, headers=None):
        self.urls.append(url)
        if len(self.urls) == 1:
            return Response(429, url, {"retry-after": "0"})
        if url == f"{BASE}/api/records/10":
            return Response(404, url, {}, lambda: iter([b'{"status": 404}']))
        if url.startswith(f"{BASE}/api/records?"):
            body = json.dumps({"hits": {"hits": [RECORD], "total": 1}}).encode()
            return Response(200, url, {}, lambda: iter([body]))
        if url == RECORD["files"][0]["links"]["self"]:
            third = len(MODEL_ZIP) // 3 + 1
            return Response(200, url, {}, lambda: (MODEL_ZIP[i:i + third] for i in range(0, len(MODEL_ZIP), third)))
        return Response(404, url, {}, lambda: iter([b"{}"]))


failures = []
transport = MemoryTransport()
notices, progress = [], []
client = ZenodoClient(zenodo_url=BASE, transport=transport, sleep=lambda s: None, on_notice=notices.append)
resolved = resolve("10.5281/zenodo.10", zenodo_url=BASE, client=client)
opened = open_model(resolved, client=client, on_progress=lambda done, total: progress.append(done))
if resolved.record.id != 11 or not any("newest version 1.1" in n for n in notices):
    failures.append(f"concept resolution: record {resolved.record.id}, notices {notices}")
if not any("rate-limited" in n for n in notices):
    failures.append(f"429 not reported: {notices}")
if progress[-1] != len(MODEL_ZIP) or len(progress) < 4:
    failures.append(f"progress {progress}")
spec = PreprocessSpec.from_card(opened.card)
with np.load(PNG_DIR / "expected.npz") as data:
    expected = {name: data[name] for name in data.files}
results = []
for name, truth in expected.items():
    image = decode_image((PNG_DIR / name).read_bytes(), name)
    probabilities = np.asarray(opened.model.predict(preprocess(image, spec))).reshape(-1)
    error = float(np.max(np.abs(probabilities - truth)))
    if error > 1e-5:
        failures.append(f"{name}: max |diff| {error:g} vs TensorFlow")
    results.append(PredictionResult(name, probabilities.tolist()))
csv_text = to_csv(results, opened.card, {"name": opened.card.name, "source": resolved.source_label, "md5": opened.md5},
                  date="2026-01-01")
if csv_text.count("\r\n") != 4 or "zenodo:11/model.tfjs.zip" not in csv_text:
    failures.append("csv: " + csv_text[:200])
print(json.dumps({"python": sys.version.split()[0], "platform": sys.platform, "requests": len(transport.urls),
                  "notices": notices, "images": len(results), "failures": failures}))
sys.exit(1 if failures else 0)
