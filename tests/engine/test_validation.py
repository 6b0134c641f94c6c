"""A negative test for every validation path of the engine (archive, model.json, weights, layers,
predict input), each matching the message. The model.json dicts here are built by hand: they
test our validation, not our numerics."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest

import app
from app.archive import read_zip
from app.errors import (ArchiveError, ModelFormatError, ModelInputError, ModelSourceError, UnsupportedFormatError,
                        UnsupportedLayerError, VitrineError)


def keras2_model(layers, weights, *, inputs=(("image", (4, 4, 3)),), outputs=None, shards=1, extra=None):
    """files mapping for a Keras-2-style functional layers-model; ``layers`` are (class, name,
    config, inbound names); ``weights`` are (name, array)."""
    topology_layers = []
    for name, shape in inputs:
        topology_layers.append({"class_name": "InputLayer", "name": name, "inbound_nodes": [],
                                "config": {"batch_input_shape": [None, *shape], "dtype": "float32", "name": name}})
    for class_name, name, config, inbound in layers:
        topology_layers.append({"class_name": class_name, "name": name, "config": {"name": name, **config},
                                "inbound_nodes": [[[src, 0, 0, {}] for src in inbound]]})
    outputs = outputs or [layers[-1][1]]
    data = b"".join(np.asarray(a, np.float32).tobytes() for _, a in weights)
    size = -(-len(data) // shards) if data else 0
    paths = [f"group1-shard{i + 1}of{shards}.bin" for i in range(shards)]
    model_json = {
        "format": "layers-model", "generatedBy": "keras v2.15.0", "convertedBy": "hand-written test",
        "modelTopology": {"keras_version": "2.15.0", "backend": "tensorflow", "model_config": {
            "class_name": "Functional", "config": {
                "name": "test_model", "layers": topology_layers,
                "input_layers": [[n, 0, 0] for n, _ in inputs], "output_layers": [[n, 0, 0] for n in outputs]}}},
        "weightsManifest": [{"paths": paths, "weights": [
            {"name": n, "shape": list(np.shape(a)), "dtype": "float32"} for n, a in weights]}],
    }
    if extra:
        model_json.update(extra)
    files = {"model.json": json.dumps(model_json).encode()}
    for i, path in enumerate(paths):
        files[path] = data[i * size:(i + 1) * size]
    return files


DENSE = ("Dense", "fc", {"units": 2, "activation": "linear", "use_bias": True}, ["flat"])
FLAT = ("Flatten", "flat", {}, ["image"])
DENSE_WEIGHTS = [("fc/kernel", np.ones((48, 2))), ("fc/bias", np.zeros(2))]


def test_hand_built_model_loads_and_predicts():
    model = app.load_model(keras2_model([FLAT, DENSE], DENSE_WEIGHTS))
    out = model.predict(np.ones((2, 4, 4, 3), np.float32))
    np.testing.assert_allclose(out, np.full((2, 2), 48.0))  # 48 ones times weight 1
    assert model.input_shape == (None, 4, 4, 3) and model.output_shape == (None, 2)


def test_every_error_is_a_vitrine_error():
    for cls in (ArchiveError, ModelFormatError, ModelInputError, UnsupportedFormatError, UnsupportedLayerError):
        assert issubclass(cls, VitrineError)


# ---- layers ------------------------------------------------------------------------------------

def test_unknown_layer_class_names_class_layer_and_supported_list():
    files = keras2_model([FLAT, ("FancyAttention", "attn", {}, ["flat"])], [])
    with pytest.raises(UnsupportedLayerError, match=r"layer 'attn' has class 'FancyAttention'.*Supported layer classes: .*Conv2D"):
        app.load_model(files)


def test_registered_application_layer_name_is_understood():
    # tf_keras InceptionResNetV2 serialises its block scaling as "Custom>CustomScaleLayer":
    # inputs[0] + inputs[1] * scale (hand-computed: 1 + 2 * 0.17 = 1.34)
    files = keras2_model([("Custom>CustomScaleLayer", "scaled", {"scale": 0.17}, ["a", "b"])], [],
                         inputs=(("a", (2, 2, 1)), ("b", (2, 2, 1))))
    model = app.load_model(files)
    out = model.predict([np.ones((1, 2, 2, 1), np.float32), np.full((1, 2, 2, 1), 2.0, np.float32)])
    np.testing.assert_allclose(out, np.full((1, 2, 2, 1), 1.34), rtol=1e-6)


def test_same_class_name_from_another_package_is_refused():
    files = keras2_model([("MyLab>CustomScaleLayer", "scaled", {"scale": 0.17}, ["a", "b"])], [],
                         inputs=(("a", (2, 2, 1)), ("b", (2, 2, 1))))
    with pytest.raises(UnsupportedLayerError, match=r"layer 'scaled' has class 'MyLab>CustomScaleLayer'"):
        app.load_model(files)


def test_lambda_layer_is_refused_with_the_reason():
    files = keras2_model([("Lambda", "my_lambda", {"function": ["4wEAAAAAAAAA", None, None]}, ["image"])], [])
    with pytest.raises(UnsupportedLayerError, match=r"'my_lambda' \(Lambda\).*serialized Python bytecode"):
        app.load_model(files)


def test_unsupported_activation_is_named():
    files = keras2_model([FLAT, ("Activation", "act", {"activation": "my_custom_fn"}, ["flat"])], [])
    with pytest.raises(UnsupportedLayerError, match=r"activation 'my_custom_fn' is not supported"):
        app.load_model(files)


def test_unsupported_tf_op_is_named():
    layer = {"class_name": "TFOpLambda", "name": "tf.linalg.svd", "config": {"name": "tf.linalg.svd", "function": "linalg.svd"},
             "inbound_nodes": [["image", 0, 0, {"name": None}]]}
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    model_json = json.loads(files["model.json"])
    model_json["modelTopology"]["model_config"]["config"]["layers"].append(layer)
    model_json["modelTopology"]["model_config"]["config"]["output_layers"] = [["tf.linalg.svd", 0, 0]]
    files["model.json"] = json.dumps(model_json).encode()
    with pytest.raises(UnsupportedLayerError, match=r"TF operation 'linalg.svd' is not supported"):
        app.load_model(files)


def test_channels_first_is_refused():
    conv = ("Conv2D", "conv", {"filters": 2, "kernel_size": [1, 1], "data_format": "channels_first", "use_bias": False}, ["image"])
    files = keras2_model([conv], [("conv/kernel", np.ones((1, 1, 3, 2)))])
    with pytest.raises(UnsupportedLayerError, match=r"data_format='channels_first' is not supported"):
        app.load_model(files)


def test_input_reading_an_unknown_layer_is_reported():
    files = keras2_model([("Flatten", "flat", {}, ["no_such_layer"])], [])
    with pytest.raises(ModelFormatError, match=r"layer 'flat' \(call 0\) reads \['no_such_layer'\], which no layer produces"):
        app.load_model(files)


# ---- weights -----------------------------------------------------------------------------------

def test_missing_shard_is_named():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS, shards=2)
    del files["group1-shard2of2.bin"]
    with pytest.raises(ModelFormatError, match=r"weight shard 'group1-shard2of2.bin' \(group 0\) is missing"):
        app.load_model(files)


def test_short_shard_is_named():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS, shards=2)
    files["group1-shard1of2.bin"] = files["group1-shard1of2.bin"][:-8]
    with pytest.raises(ModelFormatError, match=r"needs 392 bytes but its shards hold 384.*'group1-shard1of2.bin' looks short"):
        app.load_model(files)


def test_truncated_last_shard_is_named():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS, shards=1)
    files["group1-shard1of1.bin"] = files["group1-shard1of1.bin"][:100]
    with pytest.raises(ModelFormatError, match=r"'group1-shard1of1.bin' looks short or truncated"):
        app.load_model(files)


def test_shards_longer_than_manifest_are_refused():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    files["group1-shard1of1.bin"] += b"\0" * 4
    with pytest.raises(ModelFormatError, match=r"longer than the manifest describes"):
        app.load_model(files)


def test_weight_shape_mismatch_with_layer_config():
    files = keras2_model([FLAT, DENSE], [("fc/kernel", np.ones((48, 3))), ("fc/bias", np.zeros(3))])
    with pytest.raises(ModelFormatError, match=r"layer 'fc' \(Dense\): weight kernel has shape \(48, 3\), expected \(\?, 2\)"):
        app.load_model(files)


def test_missing_weight_for_layer():
    files = keras2_model([FLAT, DENSE], [("fc/kernel", np.ones((48, 2)))])
    with pytest.raises(ModelFormatError, match=r"layer 'fc' \(Dense\): expects weights \['kernel', 'bias'\] but the manifest has \['kernel'\].*missing \['bias'\]"):
        app.load_model(files)


def test_weight_matching_no_layer():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS + [("ghost/kernel", np.ones(2))])
    with pytest.raises(ModelFormatError, match=r"weights \['ghost/kernel'\] in the manifest match no layer"):
        app.load_model(files)


def test_unknown_quantization_dtype():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    model_json = json.loads(files["model.json"])
    model_json["weightsManifest"][0]["weights"][0]["quantization"] = {"dtype": "int4", "scale": 1, "min": 0}
    files["model.json"] = json.dumps(model_json).encode()
    with pytest.raises(ModelFormatError, match=r"unknown quantization dtype 'int4'"):
        app.load_model(files)


def test_uint8_quantization_is_affine_q_times_scale_plus_min():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    model_json = json.loads(files["model.json"])
    model_json["weightsManifest"][0]["weights"][0]["quantization"] = {"dtype": "uint8", "scale": 0.5, "min": -1.0,
                                                                       "original_dtype": "float32"}
    files["model.json"] = json.dumps(model_json).encode()
    q = np.full(96, 4, np.uint8)  # value = 4 * 0.5 - 1 = 1.0
    files["group1-shard1of1.bin"] = q.tobytes() + np.zeros(2, np.float32).tobytes()
    out = app.load_model(files).predict(np.ones((1, 4, 4, 3), np.float32))
    np.testing.assert_allclose(out, [[48.0, 48.0]])


# ---- model.json --------------------------------------------------------------------------------

def test_non_json_model_json():
    with pytest.raises(ModelFormatError, match=r"model.json: not valid JSON"):
        app.load_model({"model.json": b"<html>404</html>"})


def test_model_json_without_topology():
    with pytest.raises(ModelFormatError, match=r"missing 'modelTopology'"):
        app.load_model({"model.json": b'{"weightsManifest": []}'})


@pytest.mark.parametrize("model_json", [
    {"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": []},
    {"modelTopology": {"node": [], "library": {}}, "weightsManifest": []},
])
def test_graph_model_is_refused(model_json):
    with pytest.raises(UnsupportedFormatError, match=r"graph-models are not supported yet"):
        app.load_model({"model.json": json.dumps(model_json).encode()})


def test_no_model_json_in_files():
    with pytest.raises(ModelFormatError, match=r"no model.json \(TF.js layers-model\) or .tflite file found"):
        app.load_model({"readme.txt": b"hello"})


def test_missing_path():
    with pytest.raises(ModelSourceError, match=r"no such file or directory"):
        app.load_model("/nonexistent/model/folder")


def test_bytes_that_are_neither_zip_nor_tflite():
    with pytest.raises(ModelFormatError, match=r"neither a zip archive nor a TFLite model"):
        app.load_model(b"GIF89a......")


# ---- predict input -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model():
    return app.load_model(keras2_model([FLAT, DENSE], DENSE_WEIGHTS))


def test_wrong_input_shape(small_model):
    with pytest.raises(ModelInputError, match=r"expected shape \(None, 4, 4, 3\), received \(1, 5, 4, 3\)"):
        small_model.predict(np.zeros((1, 5, 4, 3), np.float32))


def test_missing_batch_axis_hint(small_model):
    with pytest.raises(ModelInputError, match=r"received \(4, 4, 3\) \(add a batch axis"):
        small_model.predict(np.zeros((4, 4, 3), np.float32))


def test_wrong_input_dtype(small_model):
    with pytest.raises(ModelInputError, match=r"expected a float array \(float32\), received dtype uint8"):
        small_model.predict(np.zeros((1, 4, 4, 3), np.uint8))


def test_wrong_number_of_inputs(small_model):
    with pytest.raises(ModelInputError, match=r"expects 1 input array\(s\), received 2"):
        small_model.predict([np.zeros((1, 4, 4, 3), np.float32)] * 2)


def test_float64_input_is_cast(small_model):
    out = small_model.predict(np.ones((1, 4, 4, 3), np.float64))
    assert out.dtype == np.float32


def test_run_until_unknown_layer(small_model):
    with pytest.raises(ModelInputError, match=r"has no layer 'nope'"):
        small_model.run_until(np.zeros((1, 4, 4, 3), np.float32), "nope")


def test_run_until_index_out_of_range(small_model):
    with pytest.raises(ModelInputError, match=r"layer index 99 is out of range"):
        small_model.run_until(np.zeros((1, 4, 4, 3), np.float32), 99)


# ---- archives ----------------------------------------------------------------------------------

def make_zip(entries, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_in_subfolder_loads():
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    data = make_zip({f"export/tfjs/{k}": v for k, v in files.items()})
    model = app.load_model(data)
    assert model.output_shape == (None, 2)


def test_read_zip_returns_members():
    assert read_zip(make_zip({"a/b.txt": b"hi", "c.bin": b"\x00\x01"}), "x.zip") == {"a/b.txt": b"hi", "c.bin": b"\x00\x01"}


def test_read_zip_views_for_stored_shards_share_the_zip_bytes():
    data = make_zip({"model.json": b"{}", "w.bin": bytes(range(200))}, compression=zipfile.ZIP_STORED)
    files = read_zip(data, "x.zip", views_for=(".bin",))
    assert isinstance(files["w.bin"], memoryview) and files["w.bin"].obj is data and files["w.bin"].readonly
    assert bytes(files["w.bin"]) == bytes(range(200)) and files["model.json"] == b"{}"
    deflated = read_zip(make_zip({"w.bin": bytes(range(200))}), "y.zip", views_for=(".bin",))
    assert deflated == {"w.bin": bytes(range(200))} and isinstance(deflated["w.bin"], bytes)


def test_corrupt_stored_shard_read_as_a_view_names_the_member():
    data = bytearray(make_zip({"weights.bin": bytes(range(256)) * 100}, compression=zipfile.ZIP_STORED))
    data[100] ^= 0xFF
    with pytest.raises(ArchiveError, match=r"flip.zip: member 'weights.bin' is corrupt or truncated \(CRC"):
        read_zip(bytes(data), "flip.zip", views_for=(".bin",))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_weights_split_across_shards_load_like_one_shard(compression):
    # 7 shards of 29 bytes cut through floats of the kernel (weights straddle shard ends) and
    # the bias: every weight equals the one-shard model's, so do the predictions
    rng = np.random.default_rng(0)
    weights = [("fc/kernel", rng.standard_normal((48, 2))), ("fc/bias", rng.standard_normal(2))]
    one = app.load_model(make_zip(keras2_model([FLAT, DENSE], weights), compression=compression))
    split = app.load_model(make_zip(keras2_model([FLAT, DENSE], weights, shards=7), compression=compression))
    for name, array in one.source_graph.weights.items():
        np.testing.assert_array_equal(split.source_graph.weights[name], array)
    x = rng.standard_normal((3, 4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(split.predict(x), one.predict(x))
    np.testing.assert_allclose(one.predict(x), x.reshape(3, -1).astype(np.float64) @ weights[0][1] + weights[1][1],
                               rtol=1e-5, atol=1e-5)


def test_zip_bomb_total_size_refused():
    data = make_zip({"zeros.bin": b"\0" * 2_000_000})
    assert len(data) < 10_000
    with pytest.raises(ArchiveError, match=r"bomb.zip: would decompress to 2000000 bytes, more than the limit of 1000000"):
        read_zip(data, "bomb.zip", max_total_bytes=1_000_000)


def test_zip_bomb_with_lying_headers_refused():
    """Headers claim 10 bytes; the stream holds 2 MB. Counting real bytes (or the CRC) stops it."""
    data = bytearray(make_zip({"zeros.bin": b"\0" * 2_000_000}))
    # patch uncompressed size in the local header (offset 22) and central directory entry
    struct.pack_into("<I", data, 22, 10)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)
    with pytest.raises(ArchiveError, match=r"lying.zip"):
        read_zip(bytes(data), "lying.zip", max_total_bytes=1_000_000)


def test_zip_too_many_entries():
    data = make_zip({f"f{i}.txt": b"x" for i in range(20)})
    with pytest.raises(ArchiveError, match=r"many.zip: 20 entries, more than the limit of 10"):
        read_zip(data, "many.zip", max_entries=10)


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/passwd", "C:/windows/evil.dll", "..\\evil.txt"])
def test_zip_unsafe_names_refused(name):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # bypass ZipInfo's own sanitising, as a hostile archive would
        archive.writestr(info, b"x")
    with pytest.raises(ArchiveError, match=r"evil.zip: member .*(path traversal|absolute path)"):
        read_zip(buffer.getvalue(), "evil.zip")


def test_truncated_zip_names_the_file():
    data = make_zip({"model.json": b"{}" * 1000, "weights.bin": bytes(range(256)) * 100})
    with pytest.raises(ArchiveError, match=r"cut.zip: corrupt or truncated"):
        read_zip(data[: len(data) // 2], "cut.zip")


def test_corrupt_member_names_the_member():
    data = bytearray(make_zip({"weights.bin": bytes(range(256)) * 100}, compression=zipfile.ZIP_STORED))
    data[100] ^= 0xFF  # flip a byte of stored data -> CRC mismatch
    with pytest.raises(ArchiveError, match=r"flip.zip: member 'weights.bin' is corrupt or truncated"):
        read_zip(bytes(data), "flip.zip")


def test_not_a_zip():
    with pytest.raises(ArchiveError, match=r"notzip.zip: not a zip archive"):
        read_zip(b"hello world", "notzip.zip")


def test_truncated_zip_via_load_model_is_archive_error(tmp_path):
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    path = tmp_path / "model.zip"
    path.write_bytes(make_zip(files)[:200])
    with pytest.raises(ArchiveError, match=r"model.zip: corrupt or truncated"):
        app.load_model(path)


@pytest.mark.parametrize("method,label", [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")])
def test_zip_members_with_unbounded_decompressors_are_refused(method, label):
    data = make_zip({"model.json": b"{}"}, compression=method)
    with pytest.raises(ArchiveError, match=rf"odd.zip: member 'model.json' is compressed with {label}, whose decompression cannot be size-limited \(zip bomb risk\); only stored and deflate"):
        read_zip(data, "odd.zip")


def test_stored_members_are_read():
    assert read_zip(make_zip({"a.bin": b"\x01\x02"}, compression=zipfile.ZIP_STORED), "s.zip") == {"a.bin": b"\x01\x02"}


def test_non_finite_weights_are_refused():
    kernel = np.ones((48, 2))
    kernel[3, 1] = np.nan
    kernel[7, 0] = np.inf
    files = keras2_model([FLAT, DENSE], [("fc/kernel", kernel), ("fc/bias", np.zeros(2))])
    with pytest.raises(ModelFormatError, match=r"weight 'fc/kernel' has 2 NaN or infinite value\(s\) out of 96"):
        app.load_model(files)


def test_name_labels_in_memory_sources_in_errors():
    with pytest.raises(ArchiveError, match=r"^chest-xray\.zip: corrupt or truncated"):
        app.load_model(make_zip({"model.json": b"{}" * 500})[:60], name="chest-xray.zip")
    with pytest.raises(ModelFormatError, match=r"^my-upload: neither a zip archive nor a TFLite model"):
        app.load_model(b"not a model", name="my-upload")
    files = keras2_model([FLAT, DENSE], DENSE_WEIGHTS)
    del files["group1-shard1of1.bin"]
    with pytest.raises(ModelFormatError, match=r"^densenet\.zip:model\.json: weight shard"):
        app.load_model(files, name="densenet.zip")


def test_check_input_is_predicts_validation(small_model):
    (feed,) = small_model.check_input(np.ones((2, 4, 4, 3), np.float64))
    assert feed.dtype == np.float32 and feed.flags.c_contiguous and feed.shape == (2, 4, 4, 3)
    with pytest.raises(ModelInputError, match=r"expected shape \(None, 4, 4, 3\), received \(2, 4, 4\)"):
        small_model.check_input(np.ones((2, 4, 4), np.float32))


CONV = ("Conv2D", "conv", {"filters": 4, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "use_bias": False,
                           "activation": "linear", "dilation_rate": [1, 1]}, ["image"])


def test_conv_kernel_for_other_input_channels_is_refused_at_load():
    # the input has 2 channels, the kernel expects 3: shape inference runs an empty batch, where
    # the convolution used to pass silently and only the first real image failed
    files = keras2_model([CONV], [("conv/kernel", np.ones((3, 3, 3, 4)))], inputs=(("image", (5, 5, 2)),))
    with pytest.raises(ModelFormatError, match=r"layers do not fit its input shape: conv2d: kernel \(3, 3, 3, 4\) "
                                               r"with groups=1 expects 3 x 1 input channels, the input has 2"):
        app.load_model(files)


def test_conv_groups_that_do_not_divide_are_refused_at_load():
    conv = (CONV[0], CONV[1], {**CONV[2], "groups": 3}, CONV[3])
    files = keras2_model([conv], [("conv/kernel", np.ones((3, 3, 3, 4)))])
    with pytest.raises(ModelFormatError, match=r"conv2d: kernel \(3, 3, 3, 4\) with groups=3 expects 3 x 3 input "
                                               r"channels, the input has 3"):
        app.load_model(files)


def test_node_reading_a_tensor_nothing_provides_is_refused_naming_it():
    # what a TFOpLambda with a damaged inbound_nodes entry used to turn into: KeyError None
    from app.ir import Graph, Node, TensorSpec
    from app.runtime import Plan

    graph = Graph(nodes=[Node("tf.nn.relu6", "relu6", (None,), ("y",))], inputs=[TensorSpec("x", (None, 2))],
                  outputs=[TensorSpec("y", (None, 2))], weights={}, name="broken")
    with pytest.raises(ModelFormatError, match=r"model 'broken': node 'tf.nn.relu6' \(relu6\) reads \[None\], which no "
                                               r"earlier layer, graph input or weight provides"):
        Plan(graph)
