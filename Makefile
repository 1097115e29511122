# Every target creates/updates .venv when needed. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPERIMENT ?= default
RUN ?=
ARGS ?=
PYTEST_ARGS ?=

RUN_FLAG := $(if $(RUN),--run.name=$(RUN),)
CLI := $(BIN)/python -m template

.DEFAULT_GOAL := help
.PHONY: help install train test lint format clean predict export

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo ""
	@echo "  Variables: EXPERIMENT=<configs/experiments name> (default: default), RUN=<run name>,"
	@echo "             ARGS=\"<LightningCLI overrides, e.g. --trainer.max_epochs=3 --model.lr=0.01>\""

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools (torch pinned by constraints.txt)

train: $(STAMP) ## Train EXPERIMENT (RUN=name, ARGS="overrides"), test the best checkpoint, print a summary
	$(CLI) fit --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

test: $(STAMP) ## Run the whole test suite (offline, writes only to temporary directories)
	WANDB_MODE=offline $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## Check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove caches and build files (keeps runs/ and .venv/)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

.PHONY: check-data
check-data: $(STAMP) ## Check an image folder before training: class counts, imbalance, sizes, bad files (DATA=<folder>)
	@test -n "$(DATA)" || { echo "error: give the folder: make check-data DATA=<folder>" >&2; exit 2; }
	$(BIN)/python -m template.check_data $(DATA)

BENCH_ARGS ?=
.PHONY: bench bench-finetune
bench: $(STAMP) ## Template fit vs a hand-written PyTorch loop, A/B pairs (BENCH_ARGS="--model resnet50 ...")
	WANDB_MODE=offline $(BIN)/python -m template bench $(BENCH_ARGS)

bench-finetune: $(STAMP) ## make finetune vs the usual hand-written fine-tune loop, epoch times + accuracy (DATA= WEIGHTS=)
	@test -n "$(DATA)" || { echo "error: give the folder: make bench-finetune DATA=<folder> WEIGHTS=<file>" >&2; exit 2; }
	WANDB_MODE=offline $(BIN)/python -m template.bench_finetune --data $(DATA) $(if $(WEIGHTS),--weights $(WEIGHTS),) $(BENCH_ARGS)

# ---- sweeps and spot checks (issue 10) ----
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
	$(BIN)/python -m template.sweep --space $(SPACE) $(if $(TRIALS),--trials $(TRIALS),) $(if $(STUDY),--study $(STUDY),) $(if $(STORAGE),--storage "$(STORAGE)",) $(SWEEP_EXPERIMENT) $(ARGS)

spotcheck: $(STAMP) ## Train each of MODELS="a b c" for EPOCHS on the same split; rank them (table, CSV, PNG)
	$(BIN)/python -m template.spotcheck --models $(MODELS) --epochs $(EPOCHS) $(if $(NAME),--name $(NAME),) $(SWEEP_EXPERIMENT) $(ARGS)

CKPT ?=
PREDICT_ARGS ?=

predict: $(STAMP) ## Predict CSV: CKPT="<ckpt or run dir> [more: ensemble]" DATA=<test|val|folder> PREDICT_ARGS="--tta flip --weights val --threshold 0.6"
	$(BIN)/python -m template.ensemble $(CKPT) --data $(or $(DATA),test) $(PREDICT_ARGS)

export: $(STAMP) ## Export CKPT (checkpoint or run dir) to TorchScript and ONNX, checked against PyTorch
	$(BIN)/python -m template.export $(CKPT)

# ---- finders and debug modes (template/tune.py); EXPERIMENT, RUN and ARGS work as for `make train`
.PHONY: lr-find bs-find overfit fast-dev-run
lr-find: $(STAMP) ## Learning-rate range test: plot + suggested lr (use: --config <run>/lr_find.yaml)
	$(BIN)/python -m template.tune lr-find --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

bs-find: $(STAMP) ## Largest batch size that fits (a multiple of 8), written to <run>/bs_find.yaml
	$(BIN)/python -m template.tune bs-find --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

overfit: $(STAMP) ## Train on one batch until the loss is ~0; fails loudly (exit 1) if it cannot
	$(BIN)/python -m template.tune overfit --experiment $(EXPERIMENT) $(RUN_FLAG) $(ARGS)

fast-dev-run: $(STAMP) ## One train/val/test batch through the whole pipeline, to catch wiring bugs fast
	$(CLI) fit --experiment $(EXPERIMENT) $(RUN_FLAG) --trainer.fast_dev_run=true $(ARGS)
# ---- transfer learning (issue 4)
DATA ?=
WEIGHTS ?=
VARIANT ?= efficientnet_lite0
OUT ?= weights/$(VARIANT).safetensors

.PHONY: finetune convert-weights
finetune: $(STAMP) ## Fine-tune a pretrained backbone: DATA=<image folder> WEIGHTS=<file, .ckpt or hub> (RUN=, ARGS=)
	$(CLI) fit --experiment finetune $(RUN_FLAG) $(if $(DATA),--data.root=$(DATA),) $(if $(WEIGHTS),--model.weights=$(WEIGHTS),) $(ARGS)

convert-weights: $(STAMP) ## Write timm-named ImageNet weights of VARIANT (efficientnet_lite0..2) to OUT (.safetensors)
	$(BIN)/python -m template.tools.convert_efficientnet_lite --variant $(VARIANT) --out $(OUT)
