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
.PHONY: help install train test lint format clean

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
