"""service.forms.parse_plain against Starlette's full multipart parser: the fast reader must give
exactly what the full parser gives, or decline (None), on plain, unusual and hostile bodies alike."""
from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from bench.wrk import multipart
from service.forms import parse_plain

LIMITS = dict(max_files=3, max_fields=4)
FIELD_BYTES = 64


def full_parse(body: bytes, content_type: str) -> list[tuple] | str:
    """Starlette's reading of the form as (name, filename, value) parts, or its error."""
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse():
        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                 "headers": [(b"content-type", content_type.encode("latin-1"))]}
        try:
            form = await Request(scope, receive).form(max_part_size=FIELD_BYTES, **LIMITS)
        except HTTPException as e:
            return f"error: {e.detail}"
        try:
            return [(k, v.filename, await v.read()) if isinstance(v, UploadFile) else (k, None, v)
                    for k, v in form.multi_items()]
        finally:
            await form.close()

    return asyncio.run(parse())


def fast_parse(body: bytes, content_type: str) -> list[tuple] | None:
    parts = parse_plain(body, content_type, max_field_bytes=FIELD_BYTES, **LIMITS)
    return None if parts is None else [tuple(p) for p in parts]


def check(body: bytes, content_type: str) -> bool:
    """The fast reader agrees with the full parser; True when it read the body itself."""
    fast = fast_parse(body, content_type)
    if fast is not None:
        assert fast == full_parse(body, content_type)
    return fast is not None


def httpx_form(files, data=None) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


@pytest.mark.parametrize("form", ["loadgen", "httpx-file", "httpx-file-and-fields", "httpx-three-files",
                                  "empty-file", "empty-filename", "utf8-names", "latin1-field"])
def test_plain_forms_are_read_fast_and_alike(form):
    body, ctype = {
        "loadgen": lambda: multipart([("image", "item.png", PNG, "image/png")]),
        "httpx-file": lambda: httpx_form({"image": ("shoe.png", PNG, "image/png")}),
        "httpx-file-and-fields": lambda: httpx_form({"image": ("a.png", PNG)}, {"model": "all", "top_k": "2"}),
        "httpx-three-files": lambda: httpx_form([("image", (f"{i}.png", PNG[i:], "image/png")) for i in range(3)]),
        "empty-file": lambda: httpx_form({"image": ("e.png", b"", "image/png")}),
        "empty-filename": lambda: multipart([("image", "", PNG, "image/png")]),
        "utf8-names": lambda: multipart([("image", "chemise-été.png", PNG, "image/png")]),
        "latin1-field": lambda: (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\xe9t\xe9"
                                 b"\r\n--b--\r\n", "multipart/form-data; boundary=b"),
    }[form]()
    assert check(body, ctype), "a plain form should not need the full parser"


def _unusual() -> dict[str, tuple[bytes, str]]:
    body, ctype = multipart([("image", "item.png", PNG, "image/png")])
    boundary = ctype.split("boundary=")[1]
    d = f"--{boundary}".encode()
    return {
        "preamble": (b"hello\r\n" + body, ctype),
        "epilogue": (body + b"trailing words", ctype),
        "no-final-crlf": (body[:-2], ctype),
        "quoted-boundary": (body, f'multipart/form-data; boundary="{boundary}"'),
        "charset": (body, f"multipart/form-data; charset=latin-1; boundary={boundary}"),
        "no-boundary": (body, "multipart/form-data"),
        "other-boundary": (body, "multipart/form-data; boundary=zzz"),
        "uppercase-params": (body.replace(b'name="image"', b'NAME="image"'), ctype),
        "quoted-quote-in-filename": (body.replace(b'filename="item.png"', b'filename="a\\"b.png"'), ctype),
        "semicolon-in-filename": (body.replace(b'filename="item.png"', b'filename="a;b.png"'), ctype),
        "windows-path-filename": (body.replace(b'filename="item.png"', b'filename="C:\\\\x\\\\a.png"'), ctype),
        "extra-part-header": (body.replace(b"Content-Type: image/png", b"Content-Transfer-Encoding: binary"), ctype),
        "no-disposition": (body.replace(b"Content-Disposition: form-data; ", b"X: "), ctype),
        "two-dispositions": (body.replace(b"Content-Type: image/png",
                                          b'Content-Disposition: form-data; name="other"'), ctype),
        "no-name": (body.replace(b'name="image"; ', b""), ctype),
        "no-space-after-colon": (body.replace(b"Content-Disposition: ", b"Content-Disposition:"), ctype),
        "delimiter-in-data": (body.replace(PNG, PNG[:9] + b"\r\n" + d + b"x" + PNG[9:]), ctype),
        "close-delimiter-in-data": (body.replace(PNG, PNG[:9] + b"\r\n" + d + b"--\r\n" + PNG[9:]), ctype),
        "truncated": (body[:len(body) // 2], ctype),
        "headers-only": (f"{d.decode()}\r\nContent-Disposition: form-data; name=\"a\"\r\n".encode(), ctype),
        "empty-form": (d + b"--\r\n", ctype),
        "empty-body": (b"", ctype),
        "too-many-files": (multipart([("image", f"{i}.png", PNG, "image/png") for i in range(4)])),
        "too-many-fields": (httpx_form({"image": ("a.png", PNG)}, {f"f{i}": "v" for i in range(5)})),
        "field-too-long": (httpx_form({"image": ("a.png", PNG)}, {"model": "m" * (FIELD_BYTES + 1)})),
        "field-at-limit": (httpx_form({"image": ("a.png", PNG)}, {"model": "m" * FIELD_BYTES})),
    }


@pytest.mark.parametrize("case", list(_unusual()))
def test_unusual_forms_are_read_alike_or_left_to_the_full_parser(case):
    body, ctype = _unusual()[case]
    read_fast = check(body, ctype)
    # Over a limit, the full parser must be the one to answer (it words the error).
    if case.startswith(("too-many", "field-too-long", "no-boundary", "preamble", "truncated")):
        assert not read_fast


def test_random_bodies_are_read_alike():
    """Random forms, and random damage to them, around the delimiter's own bytes."""
    rng = random.Random(0)
    alphabet = [b"\r", b"\n", b"-", b"\r\n", b"--", b'"', b";", b"=", b"a", b"\x00", b"\xff", b" "]
    fast = 0
    for i in range(3000):
        boundary = rng.choice(["b", "--x--", "abc123", "a'()+_,./:=?-z"])
        d = f"--{boundary}".encode()
        bits = alphabet + [d, b"\r\n" + d, b"\r\n" + d + b"--", b"\r\n\r\n"]
        parts = []
        for _ in range(rng.randint(0, 5)):
            data = b"".join(rng.choice(bits) for _ in range(rng.randint(0, 6)))
            parts.append((rng.choice(["image", "model", "top_k", "é"]),
                          rng.choice([None, "a.png", ""]), data))
        chunks = []
        for name, filename, data in parts:
            disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
            head = f"Content-Disposition: {disposition}\r\n" + rng.choice(["", "Content-Type: image/png\r\n"])
            chunks.append(d + b"\r\n" + head.encode() + b"\r\n" + data + b"\r\n")
        body = b"".join(chunks) + d + b"--" + rng.choice([b"\r\n", b""])
        if i % 2:  # damage: insert, delete or replace a few bytes anywhere
            for _ in range(rng.randint(1, 3)):
                at = rng.randint(0, len(body))
                body = body[:at] + rng.choice(bits + [b""]) + body[at + rng.randint(0, 3):]
        fast += check(body, f"multipart/form-data; boundary={boundary}")
    assert fast > 300  # about 450: the undamaged forms without a delimiter-like sequence in their data

