"""Segmentation masks vs TensorFlow's argmax (exact), areas, PNG export, overlays, colour map."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from app.errors import ModelInputError, VitrineError
from app.explain import (blend_heatmap, blend_mask, class_areas, heatmap_overlay_png, jet, mask_overlay_png,
                         mask_png, masks_from_output, palette, segment)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gradcam"


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("name", ["unet_softmax", "unet_sigmoid"])
def test_masks_match_tensorflow_exactly(name, optimize):
    with np.load(FIXTURES / name / "io.npz") as data:
        x, probabilities, expected = data["input"], data["output"], data["masks"]
    meta = json.loads((FIXTURES / name / "meta.json").read_text())
    model = app.load_model(str(FIXTURES / name), optimize=optimize)
    # the engine's error must stay far below the fixture's decision margin for exactness to mean anything
    assert np.abs(model.predict(x) - probabilities).max() < meta["min_top2_margin"] / 4
    masks = segment(model, x)
    assert masks.dtype == np.int64 and masks.shape == expected.shape
    np.testing.assert_array_equal(masks, expected)


def test_class_areas_count_pixels():
    mask = np.array([[0, 1, 1], [2, 2, 2]])
    areas = class_areas(mask, ["bg", "a", "b", "unused"])
    assert [(a.index, a.name, a.pixels) for a in areas] == [(0, "bg", 1), (1, "a", 2), (2, "b", 3), (3, "unused", 0)]
    assert [a.fraction for a in areas] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 0.0])
    assert [a.name for a in class_areas(mask, 3)] == ["class 0", "class 1", "class 2"]


def test_class_areas_rejects_unnamed_classes():
    with pytest.raises(ModelInputError, match="mask holds class 2 but only 2 classes are named"):
        class_areas(np.array([[0, 2]]), ["bg", "fg"])
    with pytest.raises(ModelInputError, match=r"needs one \(H, W\) mask, received shape \(1, 1, 2\)"):
        class_areas(np.zeros((1, 1, 2), dtype=int), 2)


def test_masks_from_output_threshold_and_argmax():
    single = np.array([[[[0.2], [0.7]], [[0.5], [0.51]]]], dtype=np.float32)
    np.testing.assert_array_equal(masks_from_output(single), [[[0, 1], [0, 1]]])
    np.testing.assert_array_equal(masks_from_output(single, threshold=0.6), [[[0, 1], [0, 0]]])
    multi = np.array([[[[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]]], dtype=np.float32)
    np.testing.assert_array_equal(masks_from_output(multi), [[[1, 0]]])


def test_classifier_output_is_refused():
    with pytest.raises(ModelInputError, match=r"needs an output of shape \(N, H, W, classes\), received \(2, 5\)"):
        masks_from_output(np.zeros((2, 5)))
    with pytest.raises(ModelInputError, match="single-output model, this one has 2 outputs"):
        masks_from_output([np.zeros((1, 2, 2, 2))] * 2)


def test_mask_png_is_a_palette_png_of_class_indices():
    mask = np.array([[0, 1, 2], [3, 3, 0]])
    decoded = Image.open(io.BytesIO(mask_png(mask, 4)))
    assert decoded.mode == "P"
    np.testing.assert_array_equal(np.asarray(decoded), mask)
    colours = np.asarray(decoded.getpalette()[:12]).reshape(4, 3)
    np.testing.assert_array_equal(colours, palette(4))
    assert tuple(colours[0]) == (0, 0, 0) and len({tuple(c) for c in colours}) == 4


def test_mask_png_rejects_out_of_range_values():
    with pytest.raises(ModelInputError, match=r"mask values must be class indices 0..1"):
        mask_png(np.array([[0, 2]]), 2)


def test_blend_mask_paints_only_foreground():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1], [2, 0]])
    out = blend_mask(image, mask, 3, alpha=0.5)
    colours = palette(3).astype(float)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 1], np.round(0.5 * 100 + 0.5 * colours[1]))
    np.testing.assert_array_equal(out[1, 0], np.round(0.5 * 100 + 0.5 * colours[2]))
    big = blend_mask(np.zeros((4, 4), dtype=np.uint8), mask, 3, alpha=1.0)  # nearest-upsampled mask
    np.testing.assert_array_equal(big[:2, 2:], np.broadcast_to(palette(3)[1], (2, 2, 3)))
    decoded = Image.open(io.BytesIO(mask_overlay_png(image, mask, 3)))
    assert decoded.size == (2, 2) and decoded.mode == "RGB"


def test_jet_endpoints_and_midpoint():
    np.testing.assert_array_equal(jet(np.array([0.0, 0.5, 1.0, 2.0])),
                                  [[0, 0, 128], [128, 255, 128], [128, 0, 0], [128, 0, 0]])


def test_blend_heatmap_weights_and_resizing():
    image = np.full((4, 6), 200, dtype=np.uint8)  # grayscale is repeated to RGB
    heat = np.zeros((2, 3), dtype=np.float32)
    out = blend_heatmap(image, heat, alpha=0.25)
    np.testing.assert_array_equal(out, np.broadcast_to(np.round(0.75 * 200 + 0.25 * np.array([0, 0, 128])), (4, 6, 3)))
    decoded = np.asarray(Image.open(io.BytesIO(heatmap_overlay_png(image, heat, 0.25))))
    np.testing.assert_array_equal(decoded, out)


@pytest.mark.parametrize("bad_image, bad_heat, alpha, message", [
    (np.zeros((2, 2), dtype=np.float32), np.zeros((2, 2)), 0.4, "background image must be uint8"),
    (np.zeros((2, 2, 2), dtype=np.uint8), np.zeros((2, 2)), 0.4, r"received shape \(2, 2, 2\)"),
    (np.zeros((2, 2), dtype=np.uint8), np.zeros((1, 2, 2)), 0.4, r"heatmap must be 2-D"),
    (np.zeros((2, 2), dtype=np.uint8), np.zeros((2, 2)), 1.5, r"alpha must be in \[0, 1\], received 1.5"),
])
def test_blend_heatmap_validation(bad_image, bad_heat, alpha, message):
    with pytest.raises(VitrineError, match=message):
        blend_heatmap(bad_image, bad_heat, alpha)
