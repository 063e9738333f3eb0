# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make train   # creates .venv, installs the pinned environment, runs train.py on the synthetic default
#   make test    # same environment: lint, the import contracts, the test suite
# Pass Hydra overrides with ARGS, e.g. make train ARGS="model=large data.fold=1".
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: train prepare test lint bench lock clean sweep agent agents sync leet dashboard optuna-dashboard
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

train: $(VENV)/.installed
	$(BIN)/python train.py $(ARGS)

prepare: $(VENV)/.installed
	$(BIN)/aslfr-prepare $(ARGS)

# W&B's CLI with this environment first on the PATH. `wandb agent` starts every trial as
# `/usr/bin/env python train.py key=value ...`: that `python` must be this environment's (a plain
# Debian PATH has none; another one lacks our dependencies). Same as `. .venv/bin/activate` first.
#   make sweep SWEEP=sweeps/depth_width.yaml      make agent ID=ENTITY/PROJECT/SWEEP_ID
#   make agents ID=ENTITY/PROJECT/SWEEP_ID GPUS=0,1 (one agent per GPU)
#   make sync DIR=sweeps-out/NAME  (default: outputs, multirun, sweeps-out)   make leet DIR=...
WANDB   ?= wandb
IN_VENV := PATH="$(abspath $(BIN)):$$PATH"
SWEEP   ?= sweeps/depth_width.yaml
sweep: $(VENV)/.installed
	$(IN_VENV) $(WANDB) sweep $(SWEEP)

agent: $(VENV)/.installed
	@test -n "$(ID)" || { echo "usage: make agent ID=ENTITY/PROJECT/SWEEP_ID (printed by make sweep)"; exit 2; }
	$(IN_VENV) $(WANDB) agent $(ARGS) $(ID)

# One `wandb agent` per GPU of this machine, each seeing only its own GPU (CUDA_VISIBLE_DEVICES):
#   make agents ID=ENTITY/PROJECT/SWEEP_ID GPUS=0,1,2,3 [ARGS="--count 10"]
# Ctrl-C stops them all (each lets its running trial end as W&B's agent does).
GPUS  ?= 0
comma := ,
agents: $(VENV)/.installed
	@test -n "$(ID)" || { echo "usage: make agents ID=ENTITY/PROJECT/SWEEP_ID GPUS=0,1,2,3"; exit 2; }
	@pids=""; for gpu in $(subst $(comma), ,$(GPUS)); do \
	  echo "GPU $$gpu: wandb agent $(ARGS) $(ID)"; \
	  CUDA_VISIBLE_DEVICES=$$gpu $(IN_VENV) $(WANDB) agent $(ARGS) $(ID) & pids="$$pids $$!"; \
	done; status=0; for pid in $$pids; do wait $$pid || status=$$?; done; exit $$status

sync: $(VENV)/.installed
	$(IN_VENV) aslfr-sync $(DIR) $(ARGS)

leet: $(VENV)/.installed
	$(IN_VENV) $(WANDB) leet $(DIR)

# The W&B workspace of a sweep (docs/dashboard.md): ARGS="--sweep ID", "--group NAME", "--all".
#   make dashboard SWEEP=sweeps/depth_width.yaml ARGS="--sweep SWEEP_ID"
dashboard: $(VENV)/.installed
	$(BIN)/aslfr-dashboard $(SWEEP) $(ARGS)

# optuna-dashboard on an offline sweep's study: SWEEP is its directory (sweeps-out/NAME) or its
# definition (sweeps/NAME.yaml -> sweeps-out/NAME).   make optuna-dashboard SWEEP=sweeps-out/folds
OPTUNA_DASHBOARD ?= $(BIN)/optuna-dashboard
optuna-dashboard: $(VENV)/.installed
	@d="$(SWEEP)"; case "$$d" in *.yaml|*.yml) d="sweeps-out/$$(basename "$${d%.*}")";; esac; \
	test -f "$$d/optuna.journal" || { echo "no $$d/optuna.journal: give an offline sweep's directory, make optuna-dashboard SWEEP=sweeps-out/NAME (with aslfr-sweep --storage URL: $(OPTUNA_DASHBOARD) URL)"; exit 2; }; \
	echo "$(OPTUNA_DASHBOARD) $$d/optuna.journal $(ARGS)"; \
	$(OPTUNA_DASHBOARD) "$$d/optuna.journal" $(ARGS)

# The whole suite (CI), on every core; `make test ARGS='-m "not slow"'` is the inner loop.
test: lint
	$(BIN)/python -m pytest -q -n auto --dist worksteal $(ARGS)

# ruff (lint, format) and the stages' import contracts (pyproject.toml)
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	$(BIN)/python bench/prepare_throughput.py
	$(BIN)/python bench/prepare_memory.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/export_latency.py
	$(BIN)/python bench/decoding.py
	$(BIN)/python bench/debug_run.py

# Re-resolve the pinned environment from pyproject.toml (needs the package registry).
lock:
	$(PYTHON) -m pip install -q --dry-run --ignore-installed --report .lock-report.json -e '.[test]'
	$(PYTHON) -c "import json; r=json.load(open('.lock-report.json')); print('\n'.join(sorted(f\"{i['metadata']['name']}=={i['metadata']['version']}\" for i in r['install'] if i['metadata']['name']!='aslfr')))" > requirements.lock
	rm -f .lock-report.json

clean:
	rm -rf $(VENV) outputs multirun
