"""A fast reader for the plain multipart/form-data uploads that curl, browsers and HTTP libraries send.

Starlette's form parser (python-multipart: a byte-by-byte state machine, a spooled file per upload)
costs a small /classify request a fifth of its server CPU: 0.668 ms of CPU per request and 2,712
requests/s with it alone, 0.546 ms and 3,259 with this reader first (wrk c64, 2 workers,
`?model=batchnorm`, a 394-byte PNG, two alternating 30 s rounds; docs/benchmarks.md, "where the
margin comes from"). `parse_plain` takes apart, with a few C-level `bytes` operations, only the plain
shape almost every upload has:

    --B\\r\\n Content-Disposition: form-data; name="image"; filename="x.png"\\r\\n
    [Content-Type: image/png\\r\\n] \\r\\n <data> \\r\\n--B ... \\r\\n--B--[\\r\\n]

within the full parser's limits, and returns None for anything else (a preamble, quoting or
escaping, other part headers, a delimiter-like byte sequence in the data, a limit exceeded, a
malformed body); the caller then uses the full parser, which also words every error. So it can only
return what the full parser returns (tests/test_forms.py compares them on many bodies).
"""
from __future__ import annotations

import re
from typing import NamedTuple

# RFC 2046 boundary characters, without the space (which may not end one and is never sent).
_CONTENT_TYPE = re.compile(rb"(?i:multipart/form-data); ?boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})")
# The disposition exactly as clients write it; no quote, backslash or ';' inside the values, so no
# escaping or quoting rule of the full parser can give a different reading.
_DISPOSITION = re.compile(rb'(?i:content-disposition): form-data; name="([^"\\;\x00-\x1f\x7f]*)"'
                          rb'(?:; filename="([^"\\;\x00-\x1f\x7f]*)")?')
_PART_TYPE = re.compile(rb"(?i:content-type): [\x21-\x7e][\x20-\x7e]*")


class Part(NamedTuple):
    """One form part, as Starlette's FormData gives it: a file's bytes, or a text field's text."""
    name: str
    filename: str | None  # None: a text field
    value: bytes | str    # bytes for a file, str for a text field


def _text(data: bytes) -> str:
    """Bytes of a field name or value as Starlette decodes them (UTF-8, else Latin-1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_plain(body: bytes, content_type: str, *, max_files: int, max_fields: int,
                max_field_bytes: int) -> list[Part] | None:
    """The parts of a plain multipart/form-data body in order, or None when the body is not plain
    or breaks a limit (more than `max_files` files or `max_fields` text fields, a text field over
    `max_field_bytes`): the full parser then reads it, or says what is wrong."""
    m = _CONTENT_TYPE.fullmatch(content_type.encode("latin-1", "replace"))
    if m is None:
        return None
    delimiter = b"--" + m.group(1)
    separator = b"\r\n" + delimiter
    closing = separator + b"--"
    if not body.startswith(delimiter + b"\r\n"):
        return None
    end = body.rfind(closing)
    if end < len(delimiter) + 2 or body[end + len(closing):] not in (b"", b"\r\n"):
        return None
    # The parts lie between the first delimiter line and the closing one. Every separator in between
    # must start a boundary line (separator CRLF): one anywhere else is a delimiter-like sequence
    # inside some data. Found in place: a large upload is copied once, each part's data into its bytes.
    bounds, start, step = [], len(delimiter) + 2, len(separator) + 2
    at = body.find(separator, start, end)
    while at != -1:
        if at + step > end or body[at + len(separator):at + step] != b"\r\n":
            return None
        bounds.append((start, at))
        start = at + step
        at = body.find(separator, at + len(separator), end)
        if at != -1 and at < start:  # overlapping the boundary just found
            return None
    bounds.append((start, end))
    parts, files, fields = [], 0, 0
    for first, last in bounds:
        blank = body.find(b"\r\n\r\n", first, last)
        if blank == -1:
            return None
        head = body[first:blank]
        disposition = None
        for line in head.split(b"\r\n"):
            d = _DISPOSITION.fullmatch(line)
            if d is not None and disposition is None:
                disposition = d
            elif d is not None or _PART_TYPE.fullmatch(line) is None:
                return None
        if disposition is None:
            return None
        name, filename = disposition.groups()
        if filename is None:
            fields += 1
            if fields > max_fields or last - blank - 4 > max_field_bytes:
                return None
        else:
            files += 1
            if files > max_files:
                return None
        data = body[blank + 4:last]
        parts.append(Part(_text(name), None, _text(data)) if filename is None
                     else Part(_text(name), _text(filename), data))
    return parts
