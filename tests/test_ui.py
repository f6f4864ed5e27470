"""The web page at /ui in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright),
loaded from a real `bentoml serve` of a small exported zoo.

Uploads a Fashion-MNIST test image (the real one when it is on this machine, else the synthetic
test set's) and a product photo, and checks that the page shows what POST /classify answers for
the same file and model, that "compare all" shows every model, that the model input it shows is
the service's own preprocessing, that the models table shows "–" for a figure a model does not
have, and that a bad file or a stopped server gives a clear message. Also BentoML's API docs at /:
"Try it out" on POST /classify answers what curl does, for a multipart upload and a raw body.
Screenshots go to $ARTIFACTS/reports/ (a temporary directory when ARTIFACTS is not set).
Skipped, saying why, when Chromium or Playwright is missing (`.ci/run` installs both).
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.images import KAGGLE_SUBSET, fashion_mnist_test_png, product_photos
from tests.service_server import REPO, bentoml_env, serve
from zoo.spec import to_pixels

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STATIC = REPO / "service" / "static"
KAGGLE_PHOTO = "19311.jpg"   # a pair of casual shoes, 60x80, on white
WAIT_MS = 60_000             # the first answers can be slow on a busy 2-core machine

if not CHROMIUM.exists():
    pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium; "
                f".ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
expect = sync_api.expect
expect.set_options(timeout=WAIT_MS)


# ---------------------------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page; fails the test if the page raised an uncaught error (a script bug or a
    Content-Security-Policy refusal)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    base = Path(os.environ["ARTIFACTS"]) if os.environ.get("ARTIFACTS") else tmp_path_factory.mktemp("artifacts")
    out = base / "reports"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def fashion_mnist_png(fmnist_dir) -> tuple[bytes, str]:
    """(PNG bytes of Fashion-MNIST test image 0, where it came from): the real dataset when this
    machine has it, else the synthetic test set (tests/images.py)."""
    return fashion_mnist_test_png(fmnist_dir)


@pytest.fixture(scope="module")
def product_photo() -> tuple[bytes, str]:
    """(JPEG bytes, where it came from): KAGGLE_PHOTO when the shared Kaggle subset is here, else a
    drawn shoe on white (tests/images.py)."""
    real = (KAGGLE_SUBSET / "images" / KAGGLE_PHOTO).is_file()
    return (product_photos(1, start=KAGGLE_PHOTO)[0],
            f"Kaggle product photo {KAGGLE_PHOTO}" if real else "a drawn shoe on white (JPEG made by the test)")


# ---------------------------------------------------------------------------------------------
# helpers

def open_page(page, server) -> None:
    page.goto(f"{server.url}/ui/")
    expect(page.locator("#models-table tbody tr").first).to_be_visible()


def classify(client: httpx.Client, data: bytes, **params) -> dict:
    r = client.post("/classify", params=params, files={"image": ("upload", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return r.json()


def upload(page, name: str, data: bytes, mime: str) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime, "buffer": data}])


def drop(page, name: str, data: bytes, mime: str) -> None:
    """Drop a file on the drop zone, as dragging it from a file manager does."""
    transfer = page.evaluate_handle(
        """([name, mime, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""", [name, mime, base64.b64encode(data).decode()])
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def percent(p: float) -> str:
    return f"{100 * p:.1f}%"


def figure(x: float | None) -> str:
    """How the models table shows an accuracy: two decimals, or "–" when the manifest has none."""
    return "–" if x is None else f"{100 * x:.2f}%"


def exponential(x: float) -> str:
    """JavaScript's x.toExponential(1): 1.1e-5, 0.0e+0."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def assert_card_shows(page, want: dict) -> None:
    """The page's card for want["model"] shows the label and the top classes /classify answered."""
    card = page.locator(f'.result[data-model="{want["model"]}"]')
    expect(card.locator(".label")).to_have_text(want["label"])
    expect(card.locator(".confidence")).to_have_text(percent(want["confidence"]))
    expect(card.locator(".bars li .bar-label")).to_have_text([t["label"] for t in want["top"]])
    expect(card.locator(".bars li .bar-value")).to_have_text([percent(t["probability"]) for t in want["top"]])


def shown_inputs(page) -> dict[str, np.ndarray]:
    """The 28x28 images the page shows as the models' inputs, by model name."""
    out = {}
    for figure in page.locator(".model-input").all():
        src = figure.locator("img").get_attribute("src")
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(src[len(prefix):]))))
        for name in figure.get_attribute("data-models").split():
            out[name] = pixels
    return out


# ---------------------------------------------------------------------------------------------
# the page and its files

def test_page_is_served_beside_the_api_docs(client):
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/ui/")
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/ui/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name
        assert r.text == (STATIC / name).read_text()
    assert client.get("/ui/no-such-file.js").status_code == 404
    docs = client.get("/")  # BentoML's own API docs are still at /
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"] and docs.text != page.text
    assert client.get("/readyz").status_code == 200


def test_page_needs_nothing_from_the_internet():
    """No URL with a host in the page's files: it works offline (its CSP would refuse one anyway)."""
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"https?:|[\"'(]//|@import", text, re.IGNORECASE), path.name


# ---------------------------------------------------------------------------------------------
# in the browser

def test_fashion_mnist_image_shows_what_classify_answers(page, server, client, fashion_mnist_png, reports):
    data, source = fashion_mnist_png
    open_page(page, server)
    models = client.get("/models").json()
    # The picker starts on auto, the service's default: it picks the model for each image.
    expect(page.locator("#model")).to_have_value("auto")
    expect(page.locator("#model option").first).to_have_text("auto — picks per image")
    upload(page, "fashion-mnist-test-0.png", data, "image/png")
    want = classify(client, data, model="auto", include_input=1)
    assert want["model"] == models["auto"]["models"]["fashion-mnist"] and want["chosen_by"] == "auto"
    assert_card_shows(page, want)
    expect(page.locator(".result .badge")).to_have_text("picked by auto")
    expect(page.locator("#message")).to_have_text(
        f'{want["model"]} (picked by auto for this image) says {want["label"]} ({percent(want["confidence"])}).')
    # The picture of what the model sees is the service's preprocessing of this very file.
    seen = shown_inputs(page)
    assert list(seen) == [want["model"]]
    expected = to_pixels(Image.open(io.BytesIO(data)), models["models"][want["model"]]["preprocess"])
    assert seen[want["model"]].shape == (28, 28) and np.array_equal(seen[want["model"]], expected)
    assert base64.b64decode(want["input_png"]) and np.array_equal(
        np.asarray(Image.open(io.BytesIO(base64.b64decode(want["input_png"])))), expected)
    expect(page.locator("#original")).to_be_visible()
    page.screenshot(path=str(reports / "ui-fashion-mnist.png"), full_page=True)
    print(f"Fashion-MNIST image: {source}")


def test_dropped_product_photo_with_each_model(page, server, client, product_photo, reports):
    data, source = product_photo
    open_page(page, server)
    names = list(client.get("/models").json()["models"])
    drop(page, "product.jpg", data, "image/jpeg")
    expect(page.locator("#file-name")).to_contain_text("product.jpg")
    expect(page.locator(".result")).to_have_count(1)
    page.select_option("#top-k", "5")
    for name in names:
        page.select_option("#model", name)
        want = classify(client, data, model=name, top_k=5)
        expect(page.locator(".result")).to_have_attribute("data-model", name)
        assert_card_shows(page, want)
    page.screenshot(path=str(reports / "ui-product-photo.png"), full_page=True)
    print(f"product photo: {source}")


def test_compare_all_shows_every_model(page, server, client, product_photo, reports):
    data, _ = product_photo
    open_page(page, server)
    page.select_option("#model", "all")
    upload(page, "product.jpg", data, "image/jpeg")
    want = classify(client, data, model="all")
    names = list(client.get("/models").json()["models"])
    assert [r["model"] for r in want["results"]] == names
    cards = page.locator(".result")
    expect(cards).to_have_count(len(names))
    expect(cards.locator("h3 code")).to_have_text(names)
    for result in want["results"]:
        assert_card_shows(page, result)
    # Every model's input is shown, each the service's own preprocessing for that model.
    seen = shown_inputs(page)
    assert sorted(seen) == sorted(names)
    models = client.get("/models").json()["models"]
    for name in names:
        assert np.array_equal(seen[name], to_pixels(Image.open(io.BytesIO(data)), models[name]["preprocess"])), name
    page.screenshot(path=str(reports / "ui.png"), full_page=True)


def test_models_table(page, server, client):
    open_page(page, server)
    info = client.get("/models").json()
    rows = page.locator("#models-table tbody tr")
    expect(rows).to_have_count(len(info["models"]))
    for name, entry in info["models"].items():
        cells = page.locator(f'#models-table tbody tr[data-model="{name}"] > *')
        expect(cells.nth(0)).to_contain_text(name)
        expect(cells.nth(3)).to_have_text(f'{entry["params"]:,}')
        expect(cells.nth(4)).to_have_text(figure(entry["metrics"]["val_acc"]))
        expect(cells.nth(5)).to_have_text(figure(entry["metrics"]["test_acc"]))
        expect(cells.nth(6)).to_contain_text(f'max |Δ| {exponential(entry["parity"]["max_abs_diff"])}')
        expect(cells.nth(7)).to_have_text(entry["provider"].removesuffix("ExecutionProvider"))
    # The models auto picks from carry a badge saying for which images (one model for both here:
    # this zoo has no photo model).
    auto_row = page.locator(f'#models-table tbody tr[data-model="{info["auto"]["models"]["fashion-mnist"]}"]')
    expect(auto_row.locator(".badge")).to_have_text("auto: Fashion-MNIST-style, photos")
    expect(page.locator("#models-summary")).to_contain_text(info["store_tag"])


# A newer version of the store's zoo in which one model has no validation accuracy, as `kaggle`
# has none (it has no validation set): its manifest entry says "val_acc": null.
NULL_VAL_ACC = """
import json, shutil, sys
from pathlib import Path
import bentoml
latest = bentoml.models.get("fashion-zoo:latest")
manifest = json.loads((Path(latest.path) / "manifest.json").read_text())
manifest["models"][sys.argv[1]]["metrics"]["val_acc"] = None
with bentoml.models.create("fashion-zoo") as ref:
    for entry in manifest["models"].values():
        shutil.copyfile(Path(latest.path) / entry["onnx"], Path(ref.path) / entry["onnx"])
    (Path(ref.path) / "manifest.json").write_text(json.dumps(manifest))
"""


def test_models_table_shows_a_dash_for_a_missing_figure(page, exported_zoo, tmp_path):
    _, home = exported_zoo
    store = tmp_path / "bentoml"
    shutil.copytree(home, store, ignore=shutil.ignore_patterns("bentos"))
    manifest = json.loads((exported_zoo[0] / "manifest.json").read_text())
    name = [n for n in manifest["models"] if n != manifest["default"]][-1]
    out = subprocess.run([sys.executable, "-c", NULL_VAL_ACC, name], cwd=REPO, env=bentoml_env(store),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with serve(store, tmp_path / "serve.log") as s:
        assert httpx.get(f"{s.url}/models").json()["models"][name]["metrics"]["val_acc"] is None
        open_page(page, s)
        cells = page.locator(f'#models-table tbody tr[data-model="{name}"] > *')
        expect(cells.nth(4)).to_have_text("–")
        expect(cells.nth(5)).to_have_text(figure(manifest["models"][name]["metrics"]["test_acc"]))
        expect(page.locator(f'#models-table tbody tr[data-model="{manifest["default"]}"] > *').nth(4)).to_have_text(
            figure(manifest["models"][manifest["default"]]["metrics"]["val_acc"]))


def test_api_docs_try_it_out(page, server, client, fashion_mnist_png, reports, tmp_path):
    """BentoML's API docs at / list the zoo's routes (from /docs.json), and "Try it out" on
    POST /classify with a Fashion-MNIST PNG and model numfilters answers what
    `curl -F image=@... '/classify?model=numfilters'` does: as a multipart upload and as a raw body."""
    data, source = fashion_mnist_png
    path = tmp_path / "fashion-mnist-test-0.png"
    path.write_bytes(data)
    url = f"{server.url}/classify?model=numfilters"
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-sS", "-F", f"image=@{path}", url], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        want = json.loads(out.stdout)
    else:  # the same request from Python
        want = classify(client, data, model="numfilters")
    assert want["model"] == "numfilters"

    page.goto(f"{server.url}/")
    for operation in ("classify", "classify_batch", "models"):
        expect(page.locator(f"#operations-fashion-zoo-{operation}")).to_be_visible()
    op = page.locator("#operations-fashion-zoo-classify")
    op.locator(".opblock-summary-control").click()
    op.locator(".try-out__btn").click()
    op.locator('tr[data-param-name="model"] select').select_option("numfilters")
    for content_type in ("multipart/form-data", "image/*"):
        op.locator(".body-param-content-type select").select_option(content_type)
        op.locator('input[type="file"]').set_input_files(
            files=[{"name": path.name, "mimeType": "image/png", "buffer": data}])
        op.locator(".btn.execute").click()
        expect(op.locator(".live-responses-table tbody .response-col_status")).to_have_text("200")
        answer = json.loads(op.locator(".live-responses-table tbody .response-col_description pre").first.inner_text())
        assert answer == want, content_type
        expect(op.locator(".curl-command")).to_contain_text(content_type)
        if content_type == "multipart/form-data":
            page.screenshot(path=str(reports / "api-docs-try-it-out.png"), full_page=True)
        op.locator(".btn-clear").click()
        expect(op.locator(".live-responses-table")).to_have_count(0)
    print(f"Try it out: {want['label']} ({source})")


def test_bad_file_gives_a_clear_message(page, server, client, fashion_mnist_png, reports):
    open_page(page, server)
    upload(page, "notes.txt", b"these are not the pixels you are looking for\n", "text/plain")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("could not classify notes.txt: not an image")
    expect(error).to_contain_text("send a PNG, JPEG")
    expect(page.locator(".result")).to_have_count(0)
    page.screenshot(path=str(reports / "ui-bad-file.png"), full_page=True)
    # An empty file and a truncated one are refused the same way; a good file then works again.
    upload(page, "empty.png", b"", "image/png")
    expect(error).to_contain_text("could not classify empty.png: the upload is empty")
    data, _ = fashion_mnist_png
    upload(page, "half.png", data[: len(data) // 2], "image/png")
    expect(error).to_contain_text("could not classify half.png")
    upload(page, "good.png", data, "image/png")
    expect(error).to_be_hidden()
    expect(page.locator(".result .label")).to_have_text(classify(client, data)["label"])


def test_stopped_server_gives_a_clear_message(page, exported_zoo, tmp_path, fashion_mnist_png):
    """The page was loaded, then the service went away: choosing an image says so."""
    _, home = exported_zoo
    with serve(home, tmp_path / "serve.log") as s:
        open_page(page, s)
    upload(page, "shoe.png", fashion_mnist_png[0], "image/png")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(f"Cannot reach the fashion-zoo service at {s.url}")
    expect(page.locator(".result")).to_have_count(0)
