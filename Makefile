# deftpipe — two commands set up a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deftpipe-installed
DEMO_WS ?= demo_ws
QUICK ?=
PYTEST_OPTS ?=

.PHONY: venv test test-fast demo lint clean

venv: $(STAMP)

# Reinstall only when the dependency list changed (the stamp is newer than pyproject.toml otherwise).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	# torch==2.13.0 first: the CPU wheel on this machine's disk, never a CUDA build.
	$(PY) -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install -q -e ".[dev,onnx,postgres]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import deftpipe, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --timeout=600 $(PYTEST_OPTS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not postgres and not browser" --timeout=120 $(PYTEST_OPTS)

ifeq ($(QUICK),1)
DEMO_SCALE := small
DEMO_EPOCHS := 2
else
DEMO_SCALE := medium
DEMO_EPOCHS := 8
endif

demo: $(STAMP)
	$(VENV)/bin/deftpipe make-demo-data $(DEMO_WS) --scale $(DEMO_SCALE) --seed 0 --force
	$(VENV)/bin/deftpipe validate-workspace $(DEMO_WS)
	$(VENV)/bin/deftpipe train --workspace $(DEMO_WS) --epochs $(DEMO_EPOCHS) --seed 0 --out $(DEMO_WS)/results/demo_train
	$(VENV)/bin/deftpipe infer --workspace $(DEMO_WS) --checkpoint $(DEMO_WS)/results/demo_train/best_val.pth \
	    --csv $(DEMO_WS)/kpi/testing_set.csv --out $(DEMO_WS)/results/demo_train/kpi_inference.csv
	@echo "== trained model on the KPI set =="
	$(VENV)/bin/deftpipe evaluate --inference-csv $(DEMO_WS)/results/demo_train/kpi_inference.csv
	@echo "== registered, tolerant zero-shot scorer on the KPI set =="
	$(VENV)/bin/deftpipe evaluate --zero-shot --workspace $(DEMO_WS) --out $(DEMO_WS)/results/demo_zeroshot
	@echo "Run directory: $(abspath $(DEMO_WS))/results/demo_train"

clean:
	rm -rf $(VENV) $(DEMO_WS) .pytest_cache
