# Two entry points: `make quickstart` (the main job on the embedded default) and `make test`.
# Both create ./.venv on first use. torch and torchvision are pinned in the same pip command as the
# rest because a torch without its matching torchvision breaks `import timm`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.echocare-installed

.PHONY: install quickstart test bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e ".[dev,deepspeed]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/echocare quickstart --output-dir runs/quickstart

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/hier_loss.py
	$(PY) bench/data_pipeline.py
	$(PY) bench/pretrain_step.py
	$(PY) bench/phantom_shards.py
	$(PY) bench/contention.py
	$(PY) bench/recipe_speed.py
	$(PY) bench/finetune_speed.py
	$(PY) bench/shard_build.py
