"""Explanations: Grad-CAM heatmaps for classifiers, masks for segmentation models.

    heat = gradcam(model, x)                        # (N, H, W) float32 in [0, 1]
    details = compute_gradcam(model, x, class_index=2, layer="conv5_block16_concat")
    png = heatmap_overlay_png(image_uint8, heat[0])
    masks = segment(model, x)                       # (N, H, W) int64
    areas = class_areas(masks[0], ["background", "lesion"])
    png = mask_png(masks[0], classes=2); png = mask_overlay_png(image_uint8, masks[0], 2)

Pure numpy + Pillow: runs under CPython and in Pyodide alike. See docs/explain.md.
"""

from .backward import VJPS, supported_ops
from .gradcam import GradCam, compute_gradcam, gradcam, layer_gradients, spatial_layers, upsample_heatmap
from .overlay import blend_heatmap, heatmap_overlay_png, jet, png_bytes
from .present import (ExplainedImage, SegmentedImage, colour_scale_png, explain_image, is_segmentation_model,
                      resolve_class, segment_image, segmentation_class_names)
from .segment import (ClassArea, blend_mask, class_areas, mask_overlay_png, mask_png, masks_from_output, palette,
                      segment)

__all__ = [
    "gradcam", "compute_gradcam", "GradCam", "layer_gradients", "spatial_layers", "upsample_heatmap", "VJPS", "supported_ops",
    "jet", "blend_heatmap", "heatmap_overlay_png", "png_bytes",
    "segment", "masks_from_output", "class_areas", "ClassArea", "palette", "mask_png", "blend_mask",
    "mask_overlay_png",
    "explain_image", "segment_image", "ExplainedImage", "SegmentedImage", "resolve_class", "is_segmentation_model",
    "segmentation_class_names", "colour_scale_png",
]
