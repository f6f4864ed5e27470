"""Classify a whole catalogue of images offline, on Ray Data: a folder, glob or list of image files
(local or a pyarrow filesystem URI such as s3://) -> a Parquet dataset, on this machine or a cluster.

    python -m catalogue photos/ labels/                 # make classify SRC=photos/ OUT=labels/
    python -m catalogue 's3://shop/photos/**/*.jpg' s3://shop/labels --address auto

The same models, preprocessing and numbers as the service (`service.inference.Batch`); see
`python -m catalogue --help` and the README's "Classify a catalogue". Torch-free.
"""
