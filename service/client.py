"""A Python client of the fashion-zoo service (synchronous, built on httpx); docs/serving.md has examples.

    with ZooClient("http://127.0.0.1:3000") as zoo:
        answer = zoo.classify("shoe.jpg", model="kaggle", top_k=2)   # a path, bytes or a PIL image

Every answer is the service's JSON, typed with service/schemas.py's shapes. A 4xx/5xx answer, or a
service that cannot be reached, raises `ClientError` with the HTTP status (None when unreachable) and
the service's own message (what was wrong and what to send instead).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

import httpx

from .schemas import AllResults, BatchResults, ModelsInfo, Result

if TYPE_CHECKING:
    from PIL.Image import Image

# A path to an image file, the file's bytes, or a PIL image (sent as PNG).
ImageInput = Union[str, os.PathLike, bytes, "Image"]


class ClientError(Exception):
    """The service refused a request (`status` 4xx/5xx, `message` its "error" text, `body` its JSON),
    or could not be reached (`status` None)."""

    def __init__(self, status: int | None, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status, self.message, self.body = status, message, body or {}


def _file(image: ImageInput, index: int) -> tuple[str, bytes, str]:
    """(filename, bytes, Content-Type) of one image for a multipart upload."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"image-{index}", bytes(image), "application/octet-stream"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return path.name, path.read_bytes(), "application/octet-stream"
    if hasattr(image, "save"):  # a PIL image: sent losslessly as PNG
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return f"image-{index}.png", buf.getvalue(), "image/png"
    raise TypeError(f"an image is a path, bytes or a PIL image, not {type(image).__name__}")


class ZooClient:
    """The service at `url` (e.g. http://127.0.0.1:3000). Use it in a `with` block, or call close()."""

    def __init__(self, url: str = "http://127.0.0.1:3000", timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def classify(self, image: ImageInput, model: str | None = None, top_k: int | None = None,
                 include_input: bool = False) -> Result | AllResults:
        """One image with one model (None: the zoo's default), or every model with model="all"."""
        return self._send("POST", "/classify", self._params(model, top_k, include_input),
                          files=[("image", _file(image, 0))])

    def classify_batch(self, images: Sequence[ImageInput], model: str | None = None,
                       top_k: int | None = None, include_input: bool = False) -> BatchResults:
        """Many images in one request (up to 256); one result per image, in order."""
        return self._send("POST", "/classify/batch", self._params(model, top_k, include_input),
                          files=[("image", _file(image, i)) for i, image in enumerate(images)])

    def models(self) -> ModelsInfo:
        """The served models: each one's manifest entry and provider, and the default."""
        return self._send("GET", "/models", {})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ZooClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _params(model: str | None, top_k: int | None, include_input: bool) -> dict[str, Any]:
        params = {"model": model, "top_k": top_k, "include_input": "1" if include_input else None}
        return {name: value for name, value in params.items() if value is not None}

    def _send(self, method: str, path: str, params: dict[str, Any], **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, params=params, **kwargs)
        except httpx.TransportError as e:
            raise ClientError(None, f"cannot reach the fashion-zoo service at {self.url} ({e}); "
                                 "is it running (make serve)?") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.is_success and isinstance(body, dict):
            return body
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            raise ClientError(r.status_code, body["error"], body)
        raise ClientError(r.status_code, f"{method} {path} answered {r.status_code} {r.reason_phrase}: "
                                      f"{r.text[:200]!r}")
