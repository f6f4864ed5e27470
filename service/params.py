"""What a request to the zoo may contain: field and parameter names, defaults and limits.

The routes (service/routes.py) enforce these and the OpenAPI description (service/openapi.py) is
written from them, so the API documentation at / cannot say something the service does not do. The
image limits are service/imaging.py's; the model names are the served zoo's (`runtime.Zoo.models`).
"""
from __future__ import annotations

IMAGE = "image"                     # the multipart field (or fields, for a batch) holding the image files
MODEL, TOP_K, INCLUDE_INPUT = "model", "top_k", "include_input"   # query parameters or form fields
ALL = "all"                         # model=all: every model, side by side
DEFAULT_TOP_K = 3                   # top_k's range is 1 to the number of classes (10)
MAX_BATCH_IMAGES = 256
MAX_BATCH_BYTES = 64 * 1024 * 1024  # a whole /classify/batch request
FORM_SLACK = 64 * 1024              # multipart headers and the small fields around one image
RAW_TYPES = ("image/", "application/octet-stream")   # Content-Types of a raw image body
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
