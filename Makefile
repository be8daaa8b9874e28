# The two set-up commands of the README. Each creates .venv on first use (Python 3.11 + pip only).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha1(open('pyproject.toml','rb').read()+open('setup.py','rb').read()).hexdigest()[:10])")

.PHONY: test demo bench-ops bench-eval bench-data bench-train bench-export clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,export]'
	$(PY) -m pip check
	rm -f $(VENV)/.installed-*
	touch $@

# Installs everything into a fresh virtual environment and runs the whole test suite.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q --durations=15

# Builds the embedded `shapes` dataset, trains, evaluates, exports ONNX, runs it with onnxruntime
# and writes predictions.png and the metric plots into runs/demo.
DEMO ?= runs/demo
demo: $(STAMP)
	$(VENV)/bin/jaxdet train --config experiments/shapes_yolo_anchor_free.py --workdir $(DEMO)
	$(VENV)/bin/jaxdet export --workdir $(DEMO) --output $(DEMO)/model.onnx
	$(VENV)/bin/jaxdet predict --model $(DEMO)/model.onnx --dataset shapes --split validation --num-images 16 --conf 0.3 --out $(DEMO)/predictions

# Benchmarks need the peers (torch/torchvision, faster-coco-eval): `make bench-ops` etc.
$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,export,bench]'
	touch $@
bench-%: $(VENV)/.bench
	$(PY) benchmarks/bench_$*.py

clean:
	rm -rf $(VENV) runs
