# fashion-zoo: `make train-all export` is the main job, `make test` runs the tests.
# Every target installs what it needs first (a virtual environment in .venv/).

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# KServe's own server and client (make bench's KServe peer, tests/test_kserve_client.py): a venv of their own.
KSERVE_VENV ?= .venv-kserve
DATA_DIR   ?= data
KAGGLE_DIR ?= data/kaggle
# A local copy of the Kaggle set that `make data` links to $(KAGGLE_DIR) when that is empty.
KAGGLE_SUBSET ?= ../shared/data/kaggle-fashion-small
ARTIFACTS  ?= artifacts
EPOCHS     ?=# empty: each model's recipe (the study's 15; photo and colour 20)
MODEL      ?= baseline
FORCE      ?= 0
# 1: the portable mode (the same weights on every x86-64 processor, ~1.8x the time); publish-weights needs it.
PORTABLE   ?= 0
# make study: seeds per batch size.
SEEDS      ?= 3
JOBS       ?= 2
HOST       ?= 127.0.0.1
PORT       ?= 3000
QUICK      ?= 0
TOP_K      ?= 3
SOAK       ?= 0
# Worker processes for make serve; empty: one per CPU core (FASHION_ZOO_WORKERS).
WORKERS    ?=
# make test: pytest-xdist worker processes (many tests wait on servers and subprocesses).
TEST_WORKERS ?= 2
# make container, make k8s-image: gpu (bentofile.yaml, onnxruntime-gpu) or cpu (bentofile-cpu.yaml, onnxruntime).
DEVICE     ?= gpu
CONTAINER_BACKEND ?=
IMAGE      ?= fashion-zoo-service$(if $(filter cpu,$(DEVICE)),-cpu):latest
# make k8s-image: where the image is pushed (REGISTRY=registry.example.com/ml) and its tag (default:
# the version of the image make container built last).
REGISTRY   ?=
TAG        ?=

TRAIN_ARGS := $(if $(EPOCHS),--epochs $(EPOCHS) )--data-dir $(DATA_DIR) --kaggle-dir $(KAGGLE_DIR) \
              --artifacts $(ARTIFACTS) --force $(FORCE) --portable $(PORTABLE)

.PHONY: help install data data-kaggle train train-all study portable-check report export test bench docs build serve clean models \
        container container-test publish-weights verify-weights classify bench-catalogue \
        k8s-validate k8s-image k8s-play

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv with the pinned dependencies and this project

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

# make bench's peers (FastAPI + uvicorn[standard], LitServe): the [bench] extra, on top of install.
$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,bench]'
	@touch $@

# The `kserve` package (0.21) needs pandas 2, the project pins pandas 3: it gets its own venv, with the
# numpy and onnxruntime-gpu releases pyproject.toml pins (never the CPU `onnxruntime` beside it: both
# install the same `onnxruntime` module, and the second one breaks the first).
$(KSERVE_VENV)/.installed: pyproject.toml
	@test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --disable-pip-version-check -q kserve==0.21.0 \
	  $$(grep -oE '"(numpy|onnxruntime-gpu)==[^"]*"' pyproject.toml | tr -d '"')
	@! $(KSERVE_VENV)/bin/python -m pip show -q onnxruntime 2>/dev/null \
	  || { echo "$(KSERVE_VENV) holds the CPU onnxruntime beside onnxruntime-gpu; remove $(KSERVE_VENV) and retry" >&2; exit 1; }
	@touch $@

# make docs (and make test, which builds the site too): MkDocs and its Material theme, the [docs] extra.
$(VENV)/.installed-docs: $(VENV)/.installed
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,docs]'
	@touch $@

models: install  ## list the zoo
	@$(PY) -m zoo

# The Debian package dataset-fashion-mnist is installed here (root, apt-get) when it and the files are missing.
data: install  ## put Fashion-MNIST under $(DATA_DIR) (Debian package dataset-fashion-mnist, else a download)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ ! -e $(DATA_DIR)/FashionMNIST/raw/train-images-idx3-ubyte ] \
	  && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing the Debian package dataset-fashion-mnist with apt-get..."; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q dataset-fashion-mnist >/dev/null \
	  || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
	  || echo "could not install dataset-fashion-mnist; trying a download"; fi
	@$(PY) -m training.data.fashion_mnist --data-dir $(DATA_DIR)
	@if [ ! -e $(KAGGLE_DIR)/styles.csv ] && [ -e $(KAGGLE_SUBSET)/styles.csv ]; then \
	  mkdir -p $(dir $(KAGGLE_DIR)) && ln -sfn $(abspath $(KAGGLE_SUBSET)) $(KAGGLE_DIR) && \
	  echo "Kaggle fashion products: linked $(KAGGLE_DIR) -> $(abspath $(KAGGLE_SUBSET))"; fi

data-kaggle: install  ## download the Kaggle set into $(KAGGLE_DIR) with kagglehub (needs a Kaggle account)
	@$(PY) -m training.data.kaggle download --kaggle-dir $(KAGGLE_DIR)

train: data  ## train one model: make train MODEL=numfilters [EPOCHS=3]
	@$(PY) -m training.train --model $(MODEL) $(TRAIN_ARGS)

train-all: data  ## train every model, retrain the best on train+val, write reports
	@$(PY) -m training.train_all --jobs $(JOBS) $(TRAIN_ARGS)

study: data  ## the recipe's grid: every study variant at batch 32 and 64, SEEDS=3 seeds each -> reports/study.md
	@$(PY) -m training.study --seeds $(SEEDS) --jobs $(JOBS) $(TRAIN_ARGS)

portable-check: install  ## the portable mode on emulated Haswell and Nehalem (qemu-user; ~10 min): the same bits as natively
	@command -v qemu-x86_64 >/dev/null || { echo "needs qemu-user: apt-get install qemu-user" >&2; exit 2; }
	$(PY) -m pytest -q -m emulated tests/test_portable.py

report: install  ## rebuild results.json/.md and the curves from the checkpoints
	@$(PY) -m training.report --artifacts $(ARTIFACTS)

# Parity uses each checkpoint's own dataset paths unless DATA_DIR/KAGGLE_DIR are given explicitly.
export: install  ## ONNX export + parity check + manifest + BentoML model store
	@$(PY) -m export --artifacts $(ARTIFACTS) \
	  $(if $(filter command line environment,$(origin DATA_DIR)),--data-dir $(DATA_DIR)) \
	  $(if $(filter command line environment,$(origin KAGGLE_DIR)),--kaggle-dir $(KAGGLE_DIR))
	@$(PY) -m release.store --artifacts $(ARTIFACTS)

test: install $(VENV)/.installed-bench $(VENV)/.installed-docs $(KSERVE_VENV)/.installed  ## run the test suite (CPU, no network, a few minutes)
	ARTIFACTS=$(ARTIFACTS) KSERVE_VENV=$(KSERVE_VENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: install $(VENV)/.installed-bench $(KSERVE_VENV)/.installed  ## benchmarks -> $(ARTIFACTS)/reports/bench.{json,md}; QUICK=1 short, SOAK=1 adds the soak
	@command -v wrk >/dev/null || { echo "make bench loads the servers with wrk: apt-get install wrk" >&2; exit 1; }
	@KSERVE_VENV=$(KSERVE_VENV) $(PY) -m bench --artifacts $(ARTIFACTS) --data-dir $(DATA_DIR) --quick $(QUICK) --soak $(SOAK)

docs: $(VENV)/.installed-docs  ## build the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

build: install  ## bentoml build (after make export)
	$(VENV)/bin/bentoml build

# make classify SRC=photos/ OUT=labels/ [MODEL=auto] [TOP_K=3] [CLASSIFY_ARGS='--address auto ...']
classify: install  ## label a folder/glob/list of images on Ray Data -> a Parquet dataset OUT (resumable)
	@test -n "$(SRC)" -a -n "$(OUT)" || { echo "usage: make classify SRC=<folder, glob or list of images> OUT=<folder> [MODEL=auto] [TOP_K=3]" >&2; exit 2; }
	@$(PY) -m catalogue '$(SRC)' '$(OUT)' --model $(if $(filter command line environment,$(origin MODEL)),$(MODEL),auto) --top-k $(TOP_K) $(CLASSIFY_ARGS)

bench-catalogue: install  ## the catalogue job vs HTTP batch vs a bare loop -> $(ARTIFACTS)/reports/catalogue.{json,md}
	@$(PY) -m bench.catalogue --artifacts $(ARTIFACTS) --data-dir $(DATA_DIR) --kaggle-dir $(KAGGLE_DIR)

container: install  ## build the image (after make export): DEVICE=gpu|cpu, CONTAINER_BACKEND=docker|podman
	@$(PY) deploy/containerize.py --device $(DEVICE) $(if $(CONTAINER_BACKEND),--backend $(CONTAINER_BACKEND))

container-test: install  ## run the image and check it over HTTP against the export (after make container)
	FASHION_ZOO_IMAGE=$(IMAGE) FASHION_ZOO_IMAGE_DEVICE=$(DEVICE) ARTIFACTS=$(ARTIFACTS) \
	  $(PY) -m pytest -q -m container tests/test_container.py

k8s-validate: install  ## render every deploy/k8s overlay; validate each object strictly, plus a reviewer's checks
	@$(PY) deploy/k8s/validate.py

k8s-image: install  ## point an overlay at the built image: DEVICE=gpu|cpu [REGISTRY=...] [TAG=...] (never latest)
	@$(PY) -m deploy.k8s.set_image --device $(DEVICE) $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(TAG),--tag $(TAG))

k8s-play: install  ## podman kube play the CPU overlay with the image of make container DEVICE=cpu, and check it
	@image=$$($(PY) -m deploy.k8s.set_image --device cpu --print) && \
	  FASHION_ZOO_IMAGE=$$image FASHION_ZOO_IMAGE_DEVICE=cpu ARTIFACTS=$(ARTIFACTS) \
	  $(PY) -m pytest -q -s -m k8s tests/test_k8s_play.py

# With no fashion-zoo in the model store (a fresh clone), the shipped weights/ are imported first.
serve: install  ## serve the zoo on http://$(HOST):$(PORT) (your make export, else the shipped weights)
	@$(PY) -m release.shipped
	$(if $(WORKERS),FASHION_ZOO_WORKERS=$(WORKERS) )$(VENV)/bin/bentoml serve service.service:FashionZoo --host $(HOST) --port $(PORT)

publish-weights: install  ## copy the full-recipe zoo (make train-all export) into weights/; refuses anything else
	@$(PY) -m release.publish --artifacts $(ARTIFACTS)

verify-weights: data  ## retrain the zoo in a temporary directory and compare every sha256 with weights/
	@$(PY) -m release.verify_weights --data-dir $(DATA_DIR) --kaggle-dir $(KAGGLE_DIR) --jobs $(JOBS)

clean:  ## remove artifacts (not data, not .venv)
	rm -rf $(ARTIFACTS)
