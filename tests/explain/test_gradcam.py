"""Grad-CAM vs TensorFlow GradientTape fixtures (tools/make_gradcam_fixtures.py) and every
validation path of app.explain.gradcam."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import app
from app.errors import ModelInputError, UnsupportedLayerError, VitrineError
from app.explain import compute_gradcam, gradcam, layer_gradients, spatial_layers
from app.ir import Graph, Node, TensorSpec
from app.model import Model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gradcam"
GRADCAM_CASES = ["small_cnn", "bn_dropout_head", "densenet_concat", "residual_add", "multilabel_sigmoid",
                 "fused_activation_target", "layernorm_head", "convnext_block", "upsample_head"]
ATOL = 1e-3


def _case(name):
    with np.load(FIXTURES / name / "io.npz") as io:
        arrays = {key: io[key] for key in io.files}
    return arrays, json.loads((FIXTURES / name / "meta.json").read_text())


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("name", GRADCAM_CASES)
def test_matches_tensorflow(name, optimize):
    io, meta = _case(name)
    model = app.load_model(str(FIXTURES / name), optimize=optimize)
    class_index = None if meta["class_index_rule"] == "top logit per image" else io["class_index"]
    result = compute_gradcam(model, io["input"], class_index=class_index, layer=str(io["layer"]))
    np.testing.assert_array_equal(result.class_index, io["class_index"])
    np.testing.assert_allclose(result.logits, io["logits"], atol=1e-4)
    np.testing.assert_allclose(result.layer_heatmap, io["heatmap"], atol=ATOL)
    np.testing.assert_allclose(result.heatmap, io["heatmap_upsampled"], atol=ATOL)
    assert result.heatmap.dtype == np.float32 and result.heatmap.shape == io["input"].shape[:3]
    low = gradcam(model, io["input"], class_index=class_index, layer=str(io["layer"]), upsample=False)
    np.testing.assert_allclose(low, io["heatmap"], atol=ATOL)


@pytest.mark.parametrize("name", GRADCAM_CASES)
def test_model_method_matches_tensorflow(name):
    io, meta = _case(name)
    model = app.load_model(str(FIXTURES / name))
    class_index = None if meta["class_index_rule"] == "top logit per image" else io["class_index"]
    heat = model.gradcam(io["input"], class_index=class_index, layer=str(io["layer"]))
    np.testing.assert_allclose(heat, io["heatmap_upsampled"], atol=ATOL)
    low = model.gradcam(io["input"], class_index=class_index, layer=str(io["layer"]), upsample=False)
    np.testing.assert_allclose(low, io["heatmap"], atol=ATOL)


@pytest.mark.parametrize("name", GRADCAM_CASES)
def test_runner_up_class_matches_tensorflow(name):
    io, _ = _case(name)
    model = app.load_model(str(FIXTURES / name))
    result = compute_gradcam(model, io["input"], class_index=io["runner_up_class"], layer=str(io["layer"]))
    np.testing.assert_allclose(result.layer_heatmap, io["runner_up_heatmap"], atol=ATOL)
    np.testing.assert_allclose(result.heatmap, io["runner_up_heatmap_upsampled"], atol=ATOL)


@pytest.mark.parametrize("name", ["small_cnn", "bn_dropout_head", "fused_activation_target", "layernorm_head"])
def test_default_layer_is_the_last_spatial_one(name):
    # in these cases the fixture's layer is the last one with a spatial output
    io, _ = _case(name)
    model = app.load_model(str(FIXTURES / name))
    result = compute_gradcam(model, io["input"])
    assert result.layer == str(io["layer"])
    np.testing.assert_allclose(result.heatmap, io["heatmap_upsampled"], atol=ATOL)


def test_spatial_layers_lists_original_names_including_folded_ones():
    model = app.load_model(str(FIXTURES / "fused_activation_target"))
    # conv2 and conv2_bn were folded / fused away in model.graph, but stay addressable
    assert spatial_layers(model) == ["conv1", "conv2", "conv2_bn", "conv2_relu"]
    assert "conv2_bn" not in model.graph.layer_outputs


def test_single_class_index_applies_to_every_image():
    io, _ = _case("small_cnn")
    model = app.load_model(str(FIXTURES / "small_cnn"))
    both = compute_gradcam(model, io["input"], class_index=1)
    np.testing.assert_array_equal(both.class_index, [1, 1])
    one = compute_gradcam(model, io["input"][1:], class_index=[1])
    np.testing.assert_allclose(both.heatmap[1], one.heatmap[0], atol=1e-6)


# ---- negative paths ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    io, _ = _case("small_cnn")
    return app.load_model(str(FIXTURES / "small_cnn")), io["input"]


def test_unknown_layer_lists_spatial_layers(small):
    model, x = small
    with pytest.raises(ModelInputError, match=r"has no layer 'conv9'; spatial layers: conv1, pool1, last_conv"):
        gradcam(model, x, layer="conv9")


def test_non_spatial_layer(small):
    model, x = small
    with pytest.raises(ModelInputError, match=r"layer 'gap' .* is not spatial \(output shape \(None, 12\); .*"
                                              r"spatial layers: conv1, pool1, last_conv"):
        gradcam(model, x, layer="gap")


@pytest.mark.parametrize("bad", [5, -1, [0, 7]])
def test_class_index_out_of_range(small, bad):
    model, x = small
    with pytest.raises(ModelInputError, match=r"class index (5|-1|7) is out of range: the model has 5 classes \(0..4\)"):
        gradcam(model, x, class_index=bad)


@pytest.mark.parametrize("bad", [[0, 1, 2], 1.5, "cat"])
def test_class_index_of_wrong_form(small, bad):
    model, x = small
    with pytest.raises(ModelInputError, match=r"class_index must be None, an int or 2 ints"):
        gradcam(model, x, class_index=bad)


def test_layer_must_be_a_name(small):
    model, x = small
    with pytest.raises(ModelInputError, match=r"layer must be a layer name \(str\), received 3"):
        gradcam(model, x, layer=3)


def test_bad_input_shape_is_the_engines_error(small):
    model, x = small
    with pytest.raises(ModelInputError, match=r"expected shape \(None, 20, 28, 3\).*add a batch axis"):
        gradcam(model, x[0])


def _graph_with_head(op: str, attrs: dict) -> Graph:
    rng = np.random.default_rng(0)
    weights = {"k": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
               "d": rng.standard_normal((4, 3)).astype(np.float32)}
    nodes = [Node("conv", "conv2d", ("x", "k"), ("conv",), {"strides": (1, 1), "dilations": (1, 1),
                                                           "pads": (1, 1, 1, 1), "activation": "relu"}),
             Node("odd_layer", op, ("conv",), ("odd",), attrs),
             Node("gap", "global_avg_pool", ("odd",), ("gap",)),
             Node("fc", "dense", ("gap", "d"), ("fc",)),
             Node("probs", "softmax", ("fc",), ("probs",), {"axis": -1})]
    return Graph(nodes=nodes, inputs=[TensorSpec("x", (None, 6, 6, 2))], outputs=[TensorSpec("probs", (None, 3))],
                 weights=weights, name="handmade",
                 layer_outputs={"conv": ("conv",), "odd_layer": ("odd",), "gap": ("gap",), "fc": ("probs",)})


def test_unsupported_op_in_the_head_names_the_layer():
    # a node with two outputs (split) has no VJP; the head reads its first part
    rng = np.random.default_rng(0)
    weights = {"k": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
               "d": rng.standard_normal((2, 3)).astype(np.float32)}
    nodes = [Node("conv", "conv2d", ("x", "k"), ("conv",), {"strides": (1, 1), "dilations": (1, 1),
                                                           "pads": (1, 1, 1, 1), "activation": "relu"}),
             Node("odd_layer", "split", ("conv",), ("odd", "odd_rest"), {"axis": -1, "sizes": (2, 2)}),
             Node("gap", "global_avg_pool", ("odd",), ("gap",)),
             Node("fc", "dense", ("gap", "d"), ("fc",)),
             Node("probs", "softmax", ("fc",), ("probs",), {"axis": -1})]
    graph = Graph(nodes=nodes, inputs=[TensorSpec("x", (None, 6, 6, 2))], outputs=[TensorSpec("probs", (None, 3))],
                  weights=weights, name="handmade",
                  layer_outputs={"conv": ("conv",), "odd_layer": ("odd", "odd_rest"), "gap": ("gap",), "fc": ("probs",)})
    model = Model(graph, optimize=False)
    x = rng.standard_normal((1, 6, 6, 2)).astype(np.float32)
    with pytest.raises(UnsupportedLayerError, match=r"Grad-CAM cannot go back through layer 'odd_layer' \(split\) "
                                                    r"between 'conv' and the class score: op 'split' has no gradient; "
                                                    r"the backward pass supports: .*global_avg_pool"):
        gradcam(model, x, layer="conv")


def test_gradcam_through_resize_equals_the_map_after_it():
    """Nearest 2x up-sampling before a global average pool: GAP(up(A)) = GAP(A), so the Grad-CAM map
    at the conv (through the resize VJP) repeated 2x must be the map at the up-sampled layer (no
    backward pass through resize). Two different paths, one identity."""
    model = Model(_graph_with_head("resize", {"scale": (2, 2), "method": "nearest"}), optimize=False)
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 2)).astype(np.float32)
    at_conv = gradcam(model, x, layer="conv", upsample=False)
    at_resize = gradcam(model, x, layer="odd_layer", upsample=False)
    assert at_conv.shape == (2, 6, 6) and at_resize.shape == (2, 12, 12)
    np.testing.assert_allclose(np.repeat(np.repeat(at_conv, 2, axis=1), 2, axis=2), at_resize, atol=1e-6)


def test_layer_that_does_not_lead_to_the_score():
    graph = _graph_with_head("relu", {})
    side = Node("side", "relu", ("conv",), ("side",))
    graph = Graph(nodes=[*graph.nodes, side], inputs=graph.inputs, outputs=graph.outputs, weights=graph.weights,
                  name=graph.name, layer_outputs={**graph.layer_outputs, "side": ("side",)})
    model = Model(graph, optimize=False)
    x = np.random.default_rng(1).standard_normal((1, 6, 6, 2)).astype(np.float32)
    with pytest.raises(ModelInputError, match=r"layer 'side' of model 'handmade' does not lead to the class scores; "
                                              r"spatial layers: conv, odd_layer"):
        gradcam(model, x, layer="side")


def test_fused_sigmoid_on_the_last_dense_is_skipped_for_the_logit():
    # a loader may hand over a dense that carries its sigmoid: the score is still the pre-activation,
    # so it must equal the same model with a separate sigmoid node
    separate = _graph_with_head("relu", {})
    nodes = list(separate.nodes[:-2]) + [Node("fc", "dense", ("gap", "d"), ("fc",), {"activation": "sigmoid"})]
    fused = Graph(nodes=nodes, inputs=separate.inputs, outputs=[TensorSpec("fc", (None, 3))],
                  weights=separate.weights, name="fused", layer_outputs={"conv": ("conv",), "odd_layer": ("odd",)})
    separate = Graph(nodes=[*separate.nodes[:-1], Node("probs", "sigmoid", ("fc",), ("probs",))],
                     inputs=separate.inputs, outputs=separate.outputs, weights=separate.weights, name="separate",
                     layer_outputs=separate.layer_outputs)
    x = np.random.default_rng(2).standard_normal((2, 6, 6, 2)).astype(np.float32)
    a = compute_gradcam(Model(fused, optimize=False), x, class_index=[0, 2], layer="conv")
    b = compute_gradcam(Model(separate, optimize=False), x, class_index=[0, 2], layer="conv")
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)
    assert a.heatmap.max() > 0


def test_segmentation_model_is_refused():
    io, _ = _case("unet_softmax")
    model = app.load_model(str(FIXTURES / "unet_softmax"))
    with pytest.raises(ModelInputError, match=r"Grad-CAM explains classifiers .* shape \(None, 32, 32, 4\) "
                                              r"\(for a segmentation model use app.explain.segment\)"):
        gradcam(model, io["input"])


def test_layer_gradients_from_a_given_layer_value_match_tensorflow_maps():
    io, _ = _case("small_cnn")
    model = app.load_model(str(FIXTURES / "small_cnn"))
    value = model.run_until(io["input"], "last_conv")
    logits, classes, gradient = layer_gradients(model, "last_conv", value)
    np.testing.assert_array_equal(classes, io["class_index"])
    maps = np.maximum(np.einsum("nhwc,nc->nhw", value.astype(np.float64), gradient.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(maps / maps.max(axis=(1, 2), keepdims=True), io["heatmap"], atol=ATOL)


def test_layer_gradients_needs_x_when_the_head_reads_the_input():
    io, _ = _case("residual_add")
    model = app.load_model(str(FIXTURES / "residual_add"))
    # res_conv1's output does not cut the input off: the shortcut still reads stem_conv
    value = model.run_until(io["input"], "res_relu1")
    with pytest.raises(ModelInputError, match=r"depend on the model input .* bypasses layer 'res_relu1'; pass x"):
        layer_gradients(model, "res_relu1", value)
    logits, _, _ = layer_gradients(model, "res_relu1", value, x=io["input"])
    np.testing.assert_allclose(logits, io["logits"], atol=1e-4)


def test_errors_are_vitrine_errors():
    assert issubclass(ModelInputError, VitrineError) and issubclass(UnsupportedLayerError, VitrineError)


# ---- big models (references: tools/make_gradcam_fixtures.py --big, cached, not committed) -------

REPO = Path(__file__).resolve().parents[2]
BIG = REPO / ".cache" / "fixtures" / "gradcam_big"
BIG_CASES = ["k2_densenet121", "k2_webipred_densenet121", "k2_resnet50", "k2_mobilenetv2", "k2_efficientnetb0",
             "k2_convnexttiny", "k2_mobilenetv3small"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG_CASES)
def test_big_model_matches_tensorflow(name):
    reference = BIG / name
    if not (reference / "io.npz").is_file():
        pytest.skip(f"{reference} is absent: run /opt/tfenv/bin/python tools/make_gradcam_fixtures.py --big "
                    f"(needs .cache/fixtures/big/{name} from tools/make_big_fixtures.py)")
    with np.load(reference / "io.npz") as data:
        io = {key: data[key] for key in data.files}
    meta = json.loads((reference / "meta.json").read_text())
    model = app.load_model(str(REPO / meta["model_dir"]))
    default = compute_gradcam(model, io["input"])
    assert default.layer == str(io["default_layer"])
    np.testing.assert_array_equal(default.class_index, io["class_index"])
    np.testing.assert_allclose(default.layer_heatmap, io["default_heatmap"], atol=ATOL)
    np.testing.assert_allclose(default.heatmap, io["default_heatmap_upsampled"], atol=ATOL)

    # the backward pass alone, from TensorFlow's own activations at the deep layer
    layer = str(io["deep_layer"])
    logits, classes, gradient = layer_gradients(model, layer, io["deep_activations"], class_index=io["class_index"])
    np.testing.assert_allclose(logits, io["logits"], atol=1e-4)
    scale = np.abs(io["deep_gradients"]).max()
    np.testing.assert_allclose(gradient, io["deep_gradients"], atol=1e-5 * scale)
    activations = io["deep_activations"].astype(np.float64)
    maps = np.maximum(np.einsum("nhwc,nc->nhw", activations, gradient.mean(axis=(1, 2))), 0)
    maps /= maps.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(maps, io["deep_heatmap"], atol=ATOL)

    # end to end the deep map is as good as the float32 forward pass allows: with seeded random
    # weights many ReLU inputs sit within float32 noise of 0, and a flipped ReLU mask moves the map
    # (measured: DenseNet121 1.6e-3, ResNet50 2.8e-3; 1e-6 relative input noise moves our own
    # ResNet50 map as much)
    deep = compute_gradcam(model, io["input"], layer=layer)
    np.testing.assert_allclose(deep.layer_heatmap, io["deep_heatmap"], atol=1e-2)
    np.testing.assert_allclose(deep.heatmap, io["deep_heatmap_upsampled"], atol=1e-2)
