"""The zoo's shipped weights (package data; docs/export.md): written by `make publish-weights`,
checked by `make verify-weights`, loaded by `zoo.load_model(name, pretrained=True)`."""
