# The set-up commands of the README. Each creates .venv on first use (Python 3.11 + pip only) and
# installs what it needs: `make demo` the package with its `export` extra; `make test` (what CI
# runs) also the test dependencies and the torch/torchvision oracles (`dev`, `bench`), so that
# every test runs (under CI a missing one fails instead of skipping, see tests/conftest.py).
PYTHON ?= python3
comma := ,
VENV ?= .venv
PY := $(VENV)/bin/python
# The packaging files (setup.py where there is one) pick the install stamps.
PACKAGING := pyproject.toml $(wildcard setup.py)
HASH := $(shell cat $(PACKAGING) | $(PYTHON) -c "import hashlib,sys;print(hashlib.sha1(sys.stdin.buffer.read()).hexdigest()[:10])")
DEMO_EXTRAS := export
TEST_EXTRAS := dev,export,bench

.PHONY: test demo gpu-check bench-ops bench-eval bench-data bench-train bench-export clean

# One stamp per set of extras and packaging files' version; a change reinstalls.
$(VENV)/.installed-%-$(HASH): $(PACKAGING)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(subst +,$(comma),$*)]'
	$(PY) -m pip check
	rm -f $(VENV)/.installed-$*-*
	touch $@
DEMO_STAMP := $(VENV)/.installed-$(subst $(comma),+,$(DEMO_EXTRAS))-$(HASH)
TEST_STAMP := $(VENV)/.installed-$(subst $(comma),+,$(TEST_EXTRAS))-$(HASH)

# Installs everything into a fresh virtual environment and runs the whole test suite.
# loadgroup: a file's tests stay on one worker (its module fixtures built once), except one
# detector family of the contract test per group (tests/conftest.py), so families spread out.
test: $(TEST_STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -q --durations=15

# Builds the embedded `shapes` dataset, trains, evaluates, exports ONNX, runs it with onnxruntime
# and writes predictions.png and the metric plots into runs/demo.
DEMO ?= runs/demo
demo: $(DEMO_STAMP)
	$(VENV)/bin/jaxdet train --config experiments/shapes_yolo_anchor_free.py --workdir $(DEMO)
	$(VENV)/bin/jaxdet export --workdir $(DEMO) --output $(DEMO)/model.onnx
	$(VENV)/bin/jaxdet predict --model $(DEMO)/model.onnx --dataset shapes --split validation --num-images 16 --conf 0.3 --out $(DEMO)/predictions

# On a machine with an NVIDIA GPU: installs the `gpu` extra into .venv-gpu and runs tests,
# benchmarks and a short training on the GPU; prints one table (benchmarks/gpu_check.sh).
gpu-check:
	bash benchmarks/gpu_check.sh

# Benchmarks need the peers (torch/torchvision, faster-coco-eval): `make bench-ops` etc.
bench-%: $(TEST_STAMP)
	$(PY) benchmarks/bench_$*.py

clean:
	rm -rf $(VENV) .venv-gpu runs
