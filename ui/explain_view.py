# "Explain" panel of a result card (MicroPython, main thread): Grad-CAM heatmaps for classifiers,
# class masks for segmentation models (issue #10, docs/explain.md). The engine worker makes every
# image (PNG layers, base64 in its JSON reply; docs/worker-api.md "Explain calls"); this module only
# shows them as data: URLs (the page's CSP allows data: images) stacked with CSS opacity, so the
# opacity slider never calls the worker. Nothing is stored beyond the card's DOM, which "End
# session" removes with the cards.
#
# ui/main.py calls three functions and keeps everything else out of its way:
#   explain_view.setup(engine_call, state)   once: engine_call(name, args, payload) -> reply dict
#   explain_view.model_ready(result)         after open_model: remembers whether it segments
#   explain_view.offer(card_node, run, result)  for a result card with probabilities
import asyncio
import json

from pyscript import document, window
from pyscript.ffi import create_proxy

_ctx = {"call": None, "state": None}
_kinds = {}          # model md5 -> "classifier" | "segmentation"
# panel id -> [(node, event, proxy)]: a panel's handlers, dropped with the panel (their closures
# reach the run, the result and the heatmap / mask images)
_panel_proxies = {}
_tokens = {}         # panel id -> number of the newest request (older replies are dropped)
_runs = {}           # panel id -> the run its result card belongs to
_next = [0]

HEATMAP_OPACITY = 40   # percent: app.explain.heatmap_overlay_png's default alpha 0.4
MASK_OPACITY = 50      # percent: app.explain.mask_overlay_png's default alpha 0.5
VIEW_WIDTH = 256       # CSS pixels; the layers are at the model's input size, scaled up


def setup(engine_call, state):
    """``engine_call(name, args, payload)`` -> reply dict (ui/main.py's engine_call_with_optional);
    ``state``: ui/main.py's state dict (read only: the loaded model and the image files)."""
    _ctx["call"] = engine_call
    _ctx["state"] = state


def model_ready(result):
    """Remember from an ``open_model`` result whether the model segments (output H x W x C)."""
    outputs = (result.get("summary") or {}).get("outputs") or [{}]
    shape = outputs[0].get("shape") or []
    _kinds[result.get("md5")] = "segmentation" if len(shape) == 4 else "classifier"


def kind_of(run):
    return _kinds.get(run["model"].get("md5"), "classifier")


def _make(tag, text=None, cls=None):
    node = document.createElement(tag)
    if text is not None:
        node.textContent = text
    if cls:
        node.className = cls
    return node


def _on(node, event, handler, panel_id):
    proxy = create_proxy(handler)
    _panel_proxies.setdefault(panel_id, []).append((node, event, proxy))
    node.addEventListener(event, proxy)


def _new_id(prefix):
    _next[0] += 1
    return "%s-%d" % (prefix, _next[0])


def _png_url(b64):
    return "data:image/png;base64," + b64


def short_layer_name(name):
    """A readable label for a layer name. TFLite tensor names join the TensorFlow ops fused into one
    operator with ";" under the model's name scopes ("model/block4_conv/Relu;model/block4_conv/BiasAdd;
    ..."): show the first op's last two path parts ("block4_conv/Relu"). Keras layer names have
    neither and are shown as they are."""
    first = name.split(";")[0]
    parts = first.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else first


def _percent(fraction):
    return "%.1f %%" % (fraction * 100)


def _area_summary(areas):
    shown = ["%s %s" % (a["name"], _percent(a["fraction"])) for a in areas[1:]]
    return "Mask: " + (", ".join(shown) if shown else "no classes")


def offer(card, run, result):
    """Add the Explain / Mask panel to a finished result ``card`` (idempotent: ui/main.py fills a
    card again when the threshold or bar order changes)."""
    if result.get("probabilities") is None or result.get("error"):
        return
    _forget_removed_panels()
    kind = kind_of(run)
    if kind == "segmentation":
        classes = run["card"]["classes"]
        fractions = result["probabilities"]
        summary = card.querySelector(".result-summary")
        if summary is not None and len(classes) == len(fractions):
            summary.textContent = _area_summary([{"name": classes[i], "fraction": fractions[i]} for i in range(len(classes))])
    if card.querySelector(".explain-box") is not None:
        return
    box = _make("details", None, "explain-box")
    box.id = _new_id("explain")
    box.setAttribute("data-kind", kind)
    box.setAttribute("data-state", "closed")
    label = "Show mask (segmentation)" if kind == "segmentation" else "Explain (Grad-CAM heatmap)"
    summary = _make("summary", label, "explain-toggle")
    box.append(summary)
    body = _make("div", None, "explain-body")
    box.append(body)
    card.append(box)
    started = [False]

    def on_toggle(event):
        if box.open and not started[0]:
            started[0] = True
            if kind == "segmentation":
                asyncio.create_task(_open_mask(box, body, run, result))
            else:
                asyncio.create_task(_open_heatmap(box, body, run, result))
    _on(box, "toggle", on_toggle, box.id)


def session_ended():
    """ui/main.py's "End session" removed the cards: forget their panels now."""
    _forget_removed_panels()


def _forget_removed_panels():
    """Drop what this module holds for panels no longer on the page (a new run, "End session")."""
    for panel_id in set(_runs) | set(_panel_proxies):
        if document.getElementById(panel_id) is None:
            _runs.pop(panel_id, None)
            _tokens.pop(panel_id, None)
            for node, event, proxy in _panel_proxies.pop(panel_id, ()):
                node.removeEventListener(event, proxy)


# ---------------------------------------------------------------------------- shared pieces
def _image_file(name):
    for image in _ctx["state"]["images"]:
        if image["name"] == name and image.get("file") is not None:
            return image["file"]
    return None


def _model_handle(run):
    model = _ctx["state"]["model"]
    if model is None or model.get("md5") != run["model"].get("md5"):
        return None
    return model["handle"]


def _status(box, text, error=False):
    line = box.querySelector(".explain-status")
    line.textContent = text
    line.className = "explain-status error-text" if error else "explain-status muted"


async def _request(box, name, args, result):
    """One engine call for this panel; returns the result dict or None (error shown)."""
    handle = _model_handle_for(box)
    file = _image_file(result["file"])
    if handle is None:
        _fail(box, "Load the model %s again to explain this result." % box.getAttribute("data-model-name"))
        return None
    if file is None:
        _fail(box, "%s is no longer in the image list: add it again to explain it." % result["file"])
        return None
    token = _tokens.get(box.id, 0) + 1
    _tokens[box.id] = token
    box.setAttribute("data-state", "loading")
    _status(box, "Computing…")
    data = window.Uint8Array.new(await file.arrayBuffer())
    args = dict(args)
    args["model"] = handle
    args["name"] = result["file"]
    reply = await _ctx["call"](name, args, data)
    if _tokens.get(box.id) != token:
        return None  # a newer request (another class / layer) replaced this one
    if not reply["ok"]:
        error = reply["error"]
        text = error.get("message", "unknown error")
        if error.get("internal") and error.get("detail"):
            text += " (" + error["detail"] + ")"
        _fail(box, text)
        return None
    box.setAttribute("data-state", "ready")
    return reply["result"]


def _model_handle_for(box):
    run = _runs.get(box.id)
    return _model_handle(run) if run is not None else None


def _fail(box, text):
    box.setAttribute("data-state", "error")
    box.setAttribute("data-error", text)
    _status(box, text, error=True)


def _stack(base_alt, layer_alt, opacity):
    """A figure with the background image and one layer on top (CSS opacity)."""
    figure = _make("figure", None, "explain-figure")
    figure.style.margin = "0.4rem 0"
    stack = _make("div", None, "explain-stack")
    stack.style.position = "relative"
    stack.style.width = "%dpx" % VIEW_WIDTH
    stack.style.maxWidth = "100%"
    base = _make("img", None, "explain-base")
    base.alt = base_alt
    layer = _make("img", None, "explain-layer")
    layer.alt = layer_alt
    for image in (base, layer):
        image.style.width = "100%"
        image.style.display = "block"
        image.style.imageRendering = "pixelated"
    layer.style.position = "absolute"
    layer.style.left = "0"
    layer.style.top = "0"
    layer.style.opacity = str(opacity / 100)
    stack.append(base)
    stack.append(layer)
    figure.append(stack)
    caption = _make("figcaption", "", "explain-caption muted")
    caption.style.overflowWrap = "anywhere"  # long layer names must not widen the card
    figure.append(caption)
    return figure, base, layer, caption


def _slider(box, layer, label_text, value):
    """Opacity slider (0-100 %) that changes only the top layer's CSS opacity."""
    row = _make("div", None, "explain-row")
    slider_id = _new_id("opacity")
    label = _make("label", label_text + " ")
    label.htmlFor = slider_id
    slider = _make("input", None, "explain-opacity")
    slider.id = slider_id
    slider.type = "range"
    slider.min = "0"
    slider.max = "100"
    slider.step = "5"
    slider.value = str(value)
    shown = _make("output", "%d %%" % value, "explain-opacity-value")
    shown.htmlFor = slider_id
    slider.setAttribute("aria-valuetext", "%d percent" % value)
    box.setAttribute("data-opacity", str(value / 100))

    def on_input(event):
        percent = int(slider.value)
        layer.style.opacity = str(percent / 100)
        shown.textContent = "%d %%" % percent
        slider.setAttribute("aria-valuetext", "%d percent" % percent)
        box.setAttribute("data-opacity", str(percent / 100))
    _on(slider, "input", on_input, box.id)
    row.append(label)
    row.append(slider)
    row.append(shown)
    return row


def _prepare(box, body, run):
    _runs[box.id] = run
    box.setAttribute("data-model-name", run["model"].get("name") or "")
    status = _make("p", "", "explain-status muted")
    status.setAttribute("role", "status")
    status.setAttribute("aria-live", "polite")
    body.append(status)


# ---------------------------------------------------------------------------- Grad-CAM
async def _open_heatmap(box, body, run, result):
    _prepare(box, body, run)
    classes = run["card"]["classes"]
    probabilities = result["probabilities"]
    top = 0
    for i in range(len(probabilities)):
        if probabilities[i] > probabilities[top]:
            top = i
    controls = _make("div", None, "explain-row")
    class_id = _new_id("explain-class")
    class_label = _make("label", "Class ")
    class_label.htmlFor = class_id
    class_select = _make("select", None, "explain-class")
    class_select.id = class_id
    for i in range(len(classes)):
        option = _make("option", "%s (%s)" % (classes[i], _percent(probabilities[i])) if i < len(probabilities) else classes[i])
        option.value = str(i)
        class_select.append(option)
    class_select.value = str(top)
    layer_id = _new_id("explain-layer")
    layer_label = _make("label", " Layer ")
    layer_label.htmlFor = layer_id
    layer_select = _make("select", None, "explain-layer-select")
    layer_select.id = layer_id
    layer_select.disabled = True
    layer_select.style.maxWidth = "100%"
    controls.append(class_label)
    controls.append(class_select)
    controls.append(layer_label)
    controls.append(layer_select)
    # shown with the first heatmap: a model that cannot be explained gets its reason, no dead controls
    controls.hidden = True
    body.append(controls)
    figure, base, heat, caption = _stack("Image %s as the model sees it" % result["file"],
                                         "Grad-CAM heatmap over %s" % result["file"], HEATMAP_OPACITY)
    body.append(figure)
    opacity_row = _slider(box, heat, "Heatmap opacity", HEATMAP_OPACITY)
    opacity_row.hidden = True
    body.append(opacity_row)
    scale = _make("div", None, "explain-scale")
    scale_img = _make("img", None, "explain-scale-img")
    scale_img.alt = "Colour scale: dark blue = no contribution, dark red = strongest contribution"
    scale_img.style.width = "%dpx" % VIEW_WIDTH
    scale_img.style.maxWidth = "100%"
    scale_img.style.height = "12px"
    scale_img.style.display = "block"
    ends = _make("div", None, "explain-scale-labels muted")
    ends.style.display = "flex"
    ends.style.justifyContent = "space-between"
    ends.style.width = "%dpx" % VIEW_WIDTH
    ends.style.maxWidth = "100%"
    ends.append(_make("span", "0"))
    ends.append(_make("span", "0.5"))
    ends.append(_make("span", "1"))
    scale.append(scale_img)
    scale.append(ends)
    scale_caption = _make("p", "", "explain-scale-caption muted")
    scale.append(scale_caption)
    body.append(scale)
    figure.hidden = True
    scale.hidden = True

    async def show(layer=None):
        args = {"class": int(class_select.value)}
        if layer:
            args["layer"] = layer
        reply = await _request(box, "explain", args, result)
        if reply is None:
            return
        base.src = _png_url(reply["image_png"])
        heat.src = _png_url(reply["heatmap_png"])
        scale_img.src = _png_url(reply["scale_png"])
        figure.hidden = False
        scale.hidden = False
        controls.hidden = False
        opacity_row.hidden = False
        caption.textContent = "Grad-CAM for %s at layer %s (%dx%d, upsampled to %dx%d)" % (
            reply["class_name"], short_layer_name(reply["layer"]), reply["layer_heatmap"]["shape"][1],
            reply["layer_heatmap"]["shape"][0], reply["heatmap"]["shape"][1], reply["heatmap"]["shape"][0])
        caption.setAttribute("title", reply["layer"])
        if layer_select.options.length == 0:
            for name in reply["layers"]:
                option = _make("option", short_layer_name(name))
                option.value = name
                option.setAttribute("title", name)
                layer_select.append(option)
            layer_select.disabled = False
        layer_select.value = reply["layer"]
        # what the heatmap shows, for tests and for anyone checking the numbers
        box.setAttribute("data-class-index", str(reply["class_index"]))
        box.setAttribute("data-class-name", reply["class_name"])
        box.setAttribute("data-layer", reply["layer"])
        box.setAttribute("data-heatmap-shape", json.dumps(reply["heatmap"]["shape"]))
        box.setAttribute("data-heatmap", reply["heatmap"]["base64"])
        box.setAttribute("data-layer-heatmap", json.dumps(reply["layer_heatmap"]))
        scale_caption.textContent = ("Colour scale for %s: contribution to its score, from none (0, blue) to the "
                                     "strongest in this image (1, red)." % reply["class_name"])
        _status(box, "Red areas raised the score of %s most (%.1f ms)." % (reply["class_name"], reply["ms"]))

    _on(class_select, "change", lambda event: asyncio.create_task(show(layer_select.value or None)), box.id)
    _on(layer_select, "change", lambda event: asyncio.create_task(show(layer_select.value or None)), box.id)
    await show()


# ---------------------------------------------------------------------------- segmentation
async def _open_mask(box, body, run, result):
    _prepare(box, body, run)
    figure, base, mask, caption = _stack("Image %s as the model sees it" % result["file"],
                                         "Segmentation mask over %s" % result["file"], MASK_OPACITY)
    figure.hidden = True
    body.append(figure)
    body.append(_slider(box, mask, "Mask opacity", MASK_OPACITY))
    table = _make("table", None, "explain-areas")
    table_caption = _make("caption", "Area per class")
    table_caption.style.textAlign = "left"
    table.append(table_caption)
    head = _make("tr")
    for title in ("Colour", "Class", "Pixels", "Area"):
        cell = _make("th", title)
        cell.setAttribute("scope", "col")
        head.append(cell)
    thead = _make("thead")
    thead.append(head)
    table.append(thead)
    tbody = _make("tbody")
    table.append(tbody)
    table.hidden = True
    body.append(table)
    export = _make("button", "Export mask PNG", "secondary small explain-export")
    export.type = "button"
    export.disabled = True
    body.append(export)

    reply = await _request(box, "segment", {}, result)
    if reply is None:
        return
    base.src = _png_url(reply["image_png"])
    mask.src = _png_url(reply["mask_rgba_png"])
    figure.hidden = False
    caption.textContent = "Mask at the model's input size (%dx%d); class colours as in the table." % (
        reply["shape"][1], reply["shape"][0])
    for entry in reply["classes"]:
        row = _make("tr")
        row.setAttribute("data-class", entry["name"])
        swatch_cell = _make("td")
        swatch = _make("span", None, "explain-swatch")
        swatch.style.display = "inline-block"
        swatch.style.width = "1rem"
        swatch.style.height = "1rem"
        swatch.setAttribute("role", "img")
        swatch_cell.append(swatch)
        if entry["index"] == 0:
            # class 0 is left unpainted on the overlay: an empty dashed box, not its palette black
            swatch.style.border = "1px dashed #94a3b8"
            swatch.setAttribute("aria-label", "not painted")
            swatch_cell.append(_make("span", " not painted", "muted"))
        else:
            swatch.style.border = "1px solid #94a3b8"
            swatch.style.backgroundColor = entry["colour"]
            swatch.setAttribute("aria-label", "colour %s" % entry["colour"])
        row.append(swatch_cell)
        row.append(_make("td", entry["name"]))
        row.append(_make("td", str(entry["pixels"])))
        row.append(_make("td", _percent(entry["fraction"])))
        tbody.append(row)
    table.hidden = False
    box.setAttribute("data-areas", json.dumps([{"name": c["name"], "pixels": c["pixels"], "fraction": c["fraction"]}
                                               for c in reply["classes"]]))
    box.setAttribute("data-mask-filename", reply["mask_filename"])
    mask_png = reply["mask_png"]
    filename = reply["mask_filename"]

    def on_export(event):
        # a data: URL download: no object URL to revoke, nothing kept after the click
        link = _make("a")
        link.href = _png_url(mask_png)
        link.download = filename
        document.body.append(link)
        link.click()
        link.remove()
    _on(export, "click", on_export, box.id)
    export.disabled = False
    _status(box, "%s (%.1f ms)." % (_area_summary(reply["classes"]), reply["ms"]))
