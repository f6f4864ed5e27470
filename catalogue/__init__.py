"""Classify a whole catalogue of images offline, on Ray Data: a folder, glob or list of image files
(local or a URI such as s3://) -> a Parquet dataset, with the service's models, preprocessing and
numbers. `make classify`, `python -m catalogue --help`, docs/catalogue.md. Torch-free.
"""
