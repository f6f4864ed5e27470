"""The OpenAPI document (/docs.json, shown at /) against a real `bentoml serve` of a small zoo:
every documented route answers as documented, the served models are the documented ones, the
documented limits are the enforced ones, and the answers have the documented shapes."""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.images import grey_png

ZOO_PATHS = {"/classify": "post", "/classify/batch": "post", "/models": "get"}
PNG = grey_png(90)   # 28x28 grey: auto sends it to the best Fashion-MNIST model


@pytest.fixture(scope="module")
def docs(client) -> dict[str, Any]:
    r = client.get("/docs.json")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def manifest(exported_zoo) -> dict:
    artifacts, _ = exported_zoo
    return json.loads((artifacts / "manifest.json").read_text())


def resolve(docs: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = docs["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def conforms(docs: dict, schema: dict, value: Any, where: str = "answer") -> list[str]:
    """Where `value` breaks the documented `schema` (the parts of JSON Schema the document uses)."""
    schema = resolve(docs, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            tries = [conforms(docs, s, value, where) for s in schema[key]]
            return [] if any(not t for t in tries) else [f"{where}: matches none of {key}: {tries}"]
    kind = schema.get("type")
    checks = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
              "integer": int, "number": (int, float)}
    if kind is not None and not isinstance(value, checks[kind]) or kind in ("integer", "number") \
            and isinstance(value, bool):
        return [f"{where}: {value!r} is not {kind}"]
    if "const" in schema and value != schema["const"] or "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema.get('enum', [schema.get('const')])}"]
    errors = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: no {k!r}" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errors += conforms(docs, props[k], v, f"{where}.{k}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: {k!r} is not documented")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += conforms(docs, schema["additionalProperties"], v, f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += conforms(docs, schema["items"], v, f"{where}[{i}]")
    return errors


def answer_schema(docs: dict, path: str, status: int) -> dict:
    response = docs["paths"][path][ZOO_PATHS[path]]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]


def assert_documented(docs: dict, path: str, r: httpx.Response) -> None:
    """`r` has a documented status and the documented JSON shape for it."""
    responses = docs["paths"][path][ZOO_PATHS[path]]["responses"]
    assert str(r.status_code) in responses, (path, r.status_code, r.text)
    assert conforms(docs, answer_schema(docs, path, r.status_code), r.json()) == []


def options(docs: dict, path: str) -> dict[str, dict]:
    """The query parameters' schemas of a documented route, by name."""
    return {p["name"]: p["schema"] for p in docs["paths"][path][ZOO_PATHS[path]].get("parameters", [])}


def form(docs: dict, path: str) -> dict:
    return docs["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


# ---------------------------------------------------------------------------------------------

def test_every_zoo_route_is_documented(docs):
    for path, method in ZOO_PATHS.items():
        operation = docs["paths"][path][method]
        assert operation["summary"] and operation["responses"]["200"]
    assert {"/livez", "/readyz", "/metrics"} <= set(docs["paths"])
    for status in ("400", "404", "413", "503"):
        content = docs["paths"]["/classify"]["post"]["responses"][status]["content"]["application/json"]
        examples = [content["example"]] if "example" in content else [e["value"] for e in content["examples"].values()]
        for example in examples:
            assert conforms(docs, answer_schema(docs, "/classify", int(status)), example) == []
    # The documented examples are answers of the documented shape.
    for example in docs["paths"]["/classify"]["post"]["responses"]["200"]["content"]["application/json"][
            "examples"].values():
        assert conforms(docs, answer_schema(docs, "/classify", 200), example["value"]) == []


def test_every_documented_route_answers(docs, client):
    """Each path in the document answers a request built from what the document says (the V2 routes:
    tests/test_v2.py)."""
    for path, item in docs["paths"].items():
        if path.startswith("/v2"):
            continue
        for method, operation in item.items():
            if method == "get":
                r = client.get(path)
            else:
                body = operation["requestBody"]["content"]
                field = next(iter(form(docs, path)["required"]))
                many = form(docs, path)["properties"][field]["type"] == "array"
                files = [(field, (f"{i}.png", grey_png(40 * i), "image/png")) for i in range(2 if many else 1)]
                r = client.request(method, path, files=files)
                assert r.status_code == 200, (path, r.text)
                assert_documented(docs, path, r)
                for media_type in body:
                    if media_type != "multipart/form-data":  # a raw body of that type
                        raw_type = media_type.replace("*", "png")
                        r = client.request(method, path, content=PNG, headers={"Content-Type": raw_type})
                        assert r.status_code == 200, (path, media_type, r.text)
                        assert_documented(docs, path, r)
            assert r.status_code == 200, (method, path, r.text)


def test_the_documented_models_are_the_served_ones(docs, client, manifest):
    served = list(client.get("/models").json()["models"])
    assert served == list(manifest["models"])
    for path in ("/classify", "/classify/batch"):
        for schema in (options(docs, path)["model"], form(docs, path)["properties"]["model"]):
            assert schema["enum"] == ["auto", *served, "all"]
        assert options(docs, path)["model"]["default"] == "auto"
    image = PNG
    for name in options(docs, "/classify")["model"]["enum"]:
        r = client.post("/classify", params={"model": name}, files={"image": ("x.png", image, "image/png")})
        assert r.status_code == 200, r.text
        assert_documented(docs, "/classify", r)
        assert r.json()["model"] == (manifest["auto"]["models"]["fashion-mnist"] if name == "auto" else name)
    r = client.post("/classify", params={"model": "not-a-model"}, files={"image": ("x.png", image, "image/png")})
    assert r.status_code == 404 and r.json()["models"] == ["auto", *served, "all"]
    assert_documented(docs, "/classify", r)


def test_documented_defaults_are_the_applied_ones(docs, client, manifest):
    r = client.post("/classify", files={"image": ("x.png", PNG, "image/png")})
    top_k = options(docs, "/classify")["top_k"]
    assert options(docs, "/classify")["model"]["default"] == "auto" and r.json()["chosen_by"] == "auto"
    assert r.json()["model"] == manifest["auto"]["models"]["fashion-mnist"]
    assert len(r.json()["top"]) == top_k["default"]
    assert "input_png" not in r.json() and options(docs, "/classify")["include_input"]["default"] is False
    r = client.post("/classify", params={"include_input": "true"}, files={"image": ("x.png", PNG, "image/png")})
    assert "input_png" in r.json()
    assert_documented(docs, "/classify", r)


def test_documented_top_k_range_is_enforced(docs, client):
    image = PNG
    for path in ("/classify", "/classify/batch"):
        top_k = options(docs, path)["top_k"]
        for k, ok in ((top_k["minimum"], True), (top_k["maximum"], True),
                      (top_k["minimum"] - 1, False), (top_k["maximum"] + 1, False)):
            r = client.post(path, params={"top_k": k}, files={"image": ("x.png", image, "image/png")})
            assert r.status_code == (200 if ok else 400), (path, k, r.text)
            assert_documented(docs, path, r)


def test_documented_image_limits_are_enforced(docs, client):
    image = form(docs, "/classify")["properties"]["image"]
    assert docs["paths"]["/classify"]["post"]["requestBody"]["content"]["image/*"]["schema"] == image
    assert form(docs, "/classify/batch")["properties"]["image"]["items"] == image
    max_bytes, max_pixels = image["maxLength"], image["x-max-pixels"]
    # Bytes: a valid PNG padded to exactly the limit is classified; one byte more is refused.
    padded = PNG + b"\0" * (max_bytes - len(PNG))
    for data, status in ((padded, 200), (padded + b"\0", 413)):
        r = client.post("/classify", content=data, headers={"Content-Type": "image/png"})
        assert r.status_code == status, r.text[:300]
        assert_documented(docs, "/classify", r)
    # Pixels: exactly the limit is classified, a row more is refused.
    width = 8000
    assert max_pixels % width == 0
    for height, status in ((max_pixels // width, 200), (max_pixels // width + 1, 413)):
        r = client.post("/classify", files={"image": ("big.png", grey_png(0, (width, height)), "image/png")})
        assert r.status_code == status, r.text[:300]
        assert_documented(docs, "/classify", r)


def test_documented_batch_size_is_enforced(docs, client):
    most = form(docs, "/classify/batch")["properties"]["image"]["maxItems"]
    one = ("image", ("x.png", PNG, "image/png"))
    r = client.post("/classify/batch", files=[one] * most)
    assert r.status_code == 200 and r.json()["count"] == most, r.text[:300]
    assert_documented(docs, "/classify/batch", r)
    r = client.post("/classify/batch", files=[one] * (most + 1))
    assert r.status_code == 413 and str(most) in r.json()["error"]
    assert_documented(docs, "/classify/batch", r)


def test_an_option_given_twice_is_documented_as_the_400_it_gets(docs, client):
    """model and top_k may be query parameters or form fields: the document says that different
    values in both places are refused, and the refusal is the documented 400."""
    for path in ("/classify", "/classify/batch"):
        params = options(docs, path)
        fields = form(docs, path)["properties"]
        for name in ("model", "top_k"):
            query_help = next(p["description"] for p in docs["paths"][path]["post"]["parameters"] if p["name"] == name)
            assert "must be equal, else the answer is 400" in query_help, (path, name)
            assert "must be equal, else 400" in fields[name]["description"], (path, name)
            assert name in params
        bad = docs["paths"][path]["post"]["responses"]["400"]
        assert "different values" in bad["description"]
        assert "an option given twice" in bad["content"]["application/json"]["examples"]
        for name, query, field in (("top_k", "2", "3"), ("model", "baseline", "dropout")):
            r = client.post(path, params={name: query}, data={name: field},
                            files={"image": ("x.png", PNG, "image/png")})
            assert r.status_code == 400 and "given twice with different values" in r.json()["error"], r.text
            assert_documented(docs, path, r)
        r = client.post(path, params={"top_k": "2"}, data={"top_k": "2"}, files={"image": ("x.png", PNG, "image/png")})
        assert r.status_code == 200, r.text  # the same value in both places is fine
