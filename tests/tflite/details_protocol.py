"""The sequence of calls whose detail dicts the TFLite fixtures record, for any interpreter with
tflite_runtime's API: LiteRT in tools/make_tflite_fixtures.py (the oracle, stored in each case's
meta.json as ``litert_details``) and ours in tests/tflite/test_details.py. One definition, so the
test drives our interpreter exactly as the generator drove LiteRT. Standard library only: the
generator loads this file by path in its TensorFlow venv."""


def drive_details(interp, inputs) -> dict:
    """Detail dicts right after ``allocate_tensors()``, after resizing the inputs to ``inputs``'
    shapes and allocating again (before invoke), and after setting ``inputs`` and invoking; plus
    ``get_signature_list()``."""

    def state():
        return {"inputs": interp.get_input_details(), "outputs": interp.get_output_details()}

    interp.allocate_tensors()
    states = {"allocated": state()}
    for d, x in zip(interp.get_input_details(), inputs):
        interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    states["resized"] = state()
    for d, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    states["invoked"] = state()
    states["signature_list"] = interp.get_signature_list()
    return states
