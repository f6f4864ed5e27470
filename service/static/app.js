// The fashion-zoo page: pick or drop an image, POST it to /classify, draw the answer.
// Plain browser JavaScript, no build step, no third-party code. Everything the page shows comes
// from the service: the models from GET /models, the answers and the 28x28 inputs the models saw
// from POST /classify?include_input=1 (the page never preprocesses an image itself).
"use strict";

// The page lives at <service>/ui/, so the service's routes are one level up.
const API = new URL("../", document.baseURI);
const ALL = "all";
const AUTO = "auto";  // picks a model per image (the service's default)
const KINDS = { "fashion-mnist": "Fashion-MNIST-style", photo: "photos" };  // model=auto's kinds of image

const $ = (id) => document.getElementById(id);
const el = {
  form: $("form"), file: $("file"), drop: $("drop"), fileName: $("file-name"),
  model: $("model"), topK: $("top-k"), button: $("classify"),
  message: $("message"), error: $("error"),
  originalView: $("original-view"), original: $("original"),
  inputs: $("inputs"), results: $("results"),
  table: $("models-table"), summary: $("models-summary"),
};

const state = { file: null, models: null, defaultModel: null, request: 0, previewUrl: null };

// ------------------------------------------------------------------------------------------
// small helpers

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const percent = (p, digits = 1) => `${(100 * p).toFixed(digits)}%`;
const bytes = (n) => (n < 1024 ? `${n} bytes` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB`
  : `${(n / 1048576).toFixed(1)} MiB`);
const providerName = (p) => (p || "?").replace(/ExecutionProvider$/, "");
// A figure the manifest does not have (null or absent, e.g. kaggle's val_acc: it has no validation set).
const MISSING = "–";
const known = (x) => x !== undefined && x !== null;

function say(text) {
  el.error.hidden = true;
  el.error.textContent = "";
  el.message.textContent = text;
  el.message.hidden = !text;
}

function fail(text) {
  el.message.hidden = true;
  el.message.textContent = "";
  el.error.textContent = text;
  el.error.hidden = false;
}

const UNREACHABLE = `Cannot reach the fashion-zoo service at ${API.origin}. ` +
  "Check that it is running (make serve), then try again.";

// GET or POST one of the service's routes; resolves to the parsed JSON or throws an Error whose
// message is fit to show (the service's own "error" text for a 4xx/5xx answer).
async function call(path, options = {}) {
  let response;
  try {
    response = await fetch(new URL(path, API), { cache: "no-store", ...options });
  } catch (e) {
    throw new Error(UNREACHABLE);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const why = body && typeof body.error === "string" ? body.error : `HTTP ${response.status} ${response.statusText}`;
    const error = new Error(why);
    error.status = response.status;
    throw error;
  }
  if (body === null) throw new Error(`The service answered ${path} with something that is not JSON.`);
  return body;
}

// ------------------------------------------------------------------------------------------
// the models: the select and the table

async function loadModels() {
  let info;
  try {
    info = await call("models");
  } catch (e) {
    el.summary.textContent = "The list of models could not be loaded.";
    fail(e.status ? `The service could not list its models: ${e.message}` : e.message);
    return;
  }
  state.models = info.models;
  state.defaultModel = info.default;
  // Which kinds of image model=auto sends to each model: its badge in the table.
  const autoFor = new Map();
  for (const [kind, name] of Object.entries((info.auto || {}).models || {})) {
    autoFor.set(name, [...(autoFor.get(name) || []), KINDS[kind] || kind]);
  }

  const chosen = el.model.value;
  el.model.replaceChildren(
    ...(info.auto ? [h("option", { value: AUTO, text: "auto — picks per image" })] : []),
    ...Object.keys(info.models).map((name) => h("option", {
      value: name, text: name === info.default ? `${name} (default)` : name,
    })),
    h("option", { value: ALL, text: "Compare all models" }),
  );
  const valid = (chosen && chosen in info.models) || chosen === ALL || (chosen === AUTO && info.auto);
  el.model.value = valid ? chosen : info.default;

  const entries = Object.entries(info.models);
  const bestVal = Math.max(...entries.map(([, m]) => (m.metrics || {}).val_acc ?? -1));
  const rows = entries.map(([name, m]) => {
    const metrics = m.metrics || {};
    const parity = m.parity || {};
    const parityCell = !known(parity.max_abs_diff) ? h("td", { class: "num", text: MISSING })
      : h("td", { class: "num" },
        h("span", { text: `max |Δ| ${Number(parity.max_abs_diff).toExponential(1)}` }),
        h("span", { class: "sub", text: `same top class ${percent(parity.argmax_agreement ?? 0, 0)}`,
                    title: parity.samples ? `on ${parity.samples} images (${parity.data || "validation"})` : null }));
    return h("tr", { "data-model": name },
      h("th", { scope: "row" }, h("code", { text: name }),
        name === info.default ? h("span", { class: "badge", text: "default" }) : null,
        autoFor.has(name) ? h("span", { class: "badge", text: `auto: ${autoFor.get(name).join(", ")}` }) : null),
      h("td", { text: m.description || "" }),
      h("td", { class: "nowrap", text: m.dataset || "" }),
      h("td", { class: "num", text: known(m.params) ? Number(m.params).toLocaleString("en") : MISSING }),
      h("td", { class: known(metrics.val_acc) && metrics.val_acc === bestVal ? "num best" : "num",
                text: known(metrics.val_acc) ? percent(metrics.val_acc, 2) : MISSING }),
      h("td", { class: "num", text: known(metrics.test_acc) ? percent(metrics.test_acc, 2) : MISSING }),
      parityCell,
      h("td", { text: providerName(m.provider) }),
    );
  });
  el.table.tBodies[0].replaceChildren(...rows);
  el.table.hidden = false;

  const created = info.created ? `, exported ${info.created.slice(0, 10)}` : "";
  el.summary.textContent = `${entries.length} models served from ${info.store_tag}${created}. ` +
    "Accuracies are measured on held-out images of each model's own data set (bold: best on validation). " +
    (info.device_reason ? `Running on ${info.device_reason}.` : "");
}

// ------------------------------------------------------------------------------------------
// choosing an image

function setFile(file) {
  if (!file) {
    fail("That was not a file. Drop or choose an image file (PNG, JPEG, WebP, GIF, BMP or TIFF).");
    return;
  }
  state.file = file;
  el.fileName.textContent = `${file.name || "pasted image"} (${bytes(file.size)})`;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  el.original.src = state.previewUrl;
  el.originalView.hidden = false;
  el.button.disabled = false;
  classify();
}

// A file the browser cannot show may still be one the service reads (TIFF); and if it is not an
// image at all the service says so. Either way the preview simply steps aside.
el.original.addEventListener("error", () => { el.originalView.hidden = true; });
el.original.addEventListener("load", () => { el.originalView.hidden = false; });

el.file.addEventListener("change", () => {
  if (el.file.files.length) setFile(el.file.files[0]);
});

for (const type of ["dragenter", "dragover"]) {
  el.drop.addEventListener(type, (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    el.drop.classList.add("dragging");
  });
}
el.drop.addEventListener("dragleave", (event) => {
  if (!el.drop.contains(event.relatedTarget)) el.drop.classList.remove("dragging");
});
el.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  el.drop.classList.remove("dragging");
  setFile(event.dataTransfer.files[0]);
});
// A file dropped beside the drop zone must not make the browser leave the page to show it.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => {
    if (!el.drop.contains(event.target)) event.preventDefault();
  });
}
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])][0];
  if (file) {
    event.preventDefault();
    setFile(file);
  }
});

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  classify();
});
el.model.addEventListener("change", () => { if (state.file) classify(); });
el.topK.addEventListener("change", () => { if (state.file) classify(); });

// ------------------------------------------------------------------------------------------
// classifying and drawing the answer

async function classify() {
  if (!state.file) {
    fail("Choose or drop an image first.");
    return;
  }
  const id = ++state.request;  // a newer request makes the answer to an older one stale
  const model = el.model.value;
  const query = new URLSearchParams({ top_k: el.topK.value, include_input: "1" });
  if (model) query.set("model", model);
  const form = new FormData();
  form.append("image", state.file, state.file.name || "image");

  const name = state.file.name || "the pasted image";
  say(`Classifying ${name}…`);
  el.results.setAttribute("aria-busy", "true");
  el.button.disabled = true;
  try {
    const answer = await call(`classify?${query}`, { method: "POST", body: form });
    if (id !== state.request) return;
    const results = answer.model === ALL ? answer.results : [answer];
    showInputs(results);
    showResults(results, answer.model === ALL);
    say(summary(results));
  } catch (e) {
    if (id !== state.request) return;
    el.inputs.replaceChildren();
    el.results.replaceChildren();
    fail(e.status ? `The service could not classify ${name}: ${e.message}` : e.message);
  } finally {
    if (id === state.request) {
      el.results.removeAttribute("aria-busy");
      el.button.disabled = false;
    }
  }
}

function summary(results) {
  if (results.length === 1) {
    const r = results[0];
    const picked = r.chosen_by === AUTO ? " (picked by auto for this image)" : "";
    return `${r.model}${picked} says ${r.label} (${percent(r.confidence)}).`;
  }
  const votes = new Map();
  for (const r of results) votes.set(r.label, (votes.get(r.label) || 0) + 1);
  const parts = [...votes.entries()].sort((a, b) => b[1] - a[1])
    .map(([label, n]) => `${n} ${n === 1 ? "says" : "say"} ${label}`);
  return `${results.length} models: ${parts.join(", ")}.`;
}

// The 28x28 images the models were given, as the service made them (one per distinct
// preprocessing: models that share one share the picture).
function showInputs(results) {
  const groups = new Map();
  for (const r of results) {
    if (!r.input_png) continue;
    if (!groups.has(r.input_png)) groups.set(r.input_png, []);
    groups.get(r.input_png).push(r.model);
  }
  const figures = [...groups.entries()].map(([png, names]) => {
    const every = names.length > 1 && names.length === results.length;
    const who = every ? "every model sees" : `${names.join(", ")} ${names.length > 1 ? "see" : "sees"}`;
    return h("figure", { class: "view model-input", "data-models": names.join(" ") },
      h("img", { src: `data:image/png;base64,${png}`, width: 168, height: 168,
                 alt: `The 28 by 28 greyscale input ${who}` }),
      h("figcaption", { text: `As ${who} it (28×28)` }));
  });
  el.inputs.replaceChildren(...figures);
}

function bar(probability) {
  const fill = h("span", { class: "fill" });
  fill.style.width = `${Math.max(0.5, 100 * probability).toFixed(1)}%`;  // CSSOM: allowed by the page's CSP
  return fill;
}

function showResults(results, compare) {
  el.results.classList.toggle("compare", compare);
  const cards = results.map((r) => {
    const isDefault = r.model === state.defaultModel;
    const badge = r.chosen_by === AUTO ? "picked by auto" : isDefault ? "default" : null;
    return h("article", { class: "result", "data-model": r.model, "data-label": r.label },
      h("h3", {}, h("code", { text: r.model }), badge ? h("span", { class: "badge", text: badge }) : null),
      h("p", { class: "answer" }, h("span", { class: "label", text: r.label }), " ",
        h("span", { class: "confidence", text: percent(r.confidence) })),
      h("ol", { class: "bars", "aria-label": `Top ${r.top.length} classes by ${r.model}` },
        r.top.map((t) => h("li", { "data-label": t.label },
          h("span", { class: "bar-label", text: t.label }),
          h("span", { class: "bar", "aria-hidden": "true" }, bar(t.probability)),
          h("span", { class: "bar-value", text: percent(t.probability) })))));
  });
  el.results.replaceChildren(...cards);
}

loadModels();
