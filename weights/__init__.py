"""The zoo's shipped weights (package data): for every published model its state_dict
(`<name>.pt`, weights only) and ONNX file, and one `manifest.json` in the export's format with the
sha256 of every file, the metrics, parity, preprocessing, classes, training config, date, source
commit and command. Written by `make publish-weights`, checked by `make verify-weights`; load them
with `zoo.load_model(name, pretrained=True)` and `zoo.weights_meta(name)`.
"""
