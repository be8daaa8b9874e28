#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, installs the `gpu` extra into its own venv and runs,
# each step under its own timeout, a failing step not stopping the others:
#   probe       jax, torch and onnxruntime each see the GPU
#   tests       the test suite's models, ops and train tests on the GPU (JAX_PLATFORMS=cuda)
#   bench-ops   benchmarks/bench_ops.py      jaxdet.ops vs torchvision.ops on CUDA
#   bench-train benchmarks/bench_train.py    RetinaNet-R18 train step, jaxdet vs torchvision CUDA
#   bench-export benchmarks/bench_export.py  ONNX on onnxruntime-gpu vs jax.jit vs torchvision ONNX
#   train       jaxdet train on `shapes/small` (experiments/shapes_yolo_anchor_free.py, 300 steps of 32)
# and prints one table: step, pass/fail, seconds, key figure. Logs in $GPU_CHECK_OUT (default
# runs/gpu_check/). The steps after the install are sized to finish in under 8 minutes together;
# the first install (torch, jax CUDA and onnxruntime-gpu wheels, ~6 GB) comes on top.
#
# Usage: bash benchmarks/gpu_check.sh            (or `make gpu-check`)
#        bash benchmarks/gpu_check.sh --dry-run  (same as JAXDET_GPU_CHECK_PLATFORM=cpu)
# The dry run does the same steps on CPU at tiny sizes (a few tests, small benchmarks, 10 training
# steps on shapes/tiny) in a few minutes, to check the script itself on a machine without a GPU.
# Environment: GPU_CHECK_PYTHON=python to use an existing environment instead of installing
# (the venv, default .venv-gpu, or .venv for the dry run); GPU_CHECK_STEPS="probe tests" to run
# only some steps; GPU_CHECK_LIMITS="30 170 45 75 80 80" the timeouts (s) of the six steps after
# the install; GPU_CHECK_WORKERS pytest workers (8).
set -uo pipefail
cd "$(dirname "$0")/.."

PLATFORM=${JAXDET_GPU_CHECK_PLATFORM:-cuda}
[[ "${1:-}" == "--dry-run" ]] && PLATFORM=cpu
if [[ "$PLATFORM" != cuda && "$PLATFORM" != cpu ]]; then
  echo "error: JAXDET_GPU_CHECK_PLATFORM must be cuda or cpu, got '$PLATFORM'" >&2
  exit 2
fi
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
mkdir -p "$OUT"
STEPS=${GPU_CHECK_STEPS:-probe tests bench-ops bench-train bench-export train}
RESULTS=()  # "name|status|seconds|figure"

# run_step NAME TIMEOUT_S FIGURE_FN COMMAND...: runs COMMAND with a timeout, logs to $OUT/NAME.log
# and records pass/fail/timeout, the wall time and FIGURE_FN's one-line summary of the log.
run_step() {
  local name=$1 limit=$2 figure_fn=$3
  shift 3
  if [[ " $STEPS " != *" $name "* ]]; then return; fi
  local log="$OUT/$name.log" start rc status
  local shown="$*"
  echo "== $name (timeout ${limit}s): ${shown//$'\n'/ }" | cut -c1-160
  start=$(date +%s.%N)
  # SIGINT first: pytest and Python print what they had (pytest its summary) before exiting.
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$log" 2>&1
  rc=$?
  local seconds
  seconds=$(python3 -c "import sys;print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" \
    "$start" "$(date +%s.%N)")
  case $rc in
    0) status=pass ;;
    124 | 137) status="timeout" ;;
    *) status="FAIL (rc $rc)" ;;
  esac
  local figure
  figure=$("$figure_fn" "$log" 2>/dev/null | head -c 150)
  if [[ $rc -ne 0 && -z "$figure" ]]; then  # the last error line, else the last line
    figure=$( (grep -E 'Error|error:|FAILED' "$log" || grep -v '^\s*$' "$log") | tail -n 1 | head -c 150)
  fi
  echo "   $status in ${seconds}s: $figure"
  RESULTS+=("$name|$status|$seconds|$figure")
}

# --- key figures, each from one step's log ---
fig_install() { grep -E '^(jax|torch|onnxruntime)' "$1" | tr '\n' ' '; }
fig_probe() { grep '^probe:' "$1" | sed 's/^probe: //'; }
fig_tests() { grep -E '[0-9]+ (passed|failed)' "$1" | tail -n 1 | tr -d '='; }
fig_ops() {  # geometric mean of the jaxdet/torchvision median-time ratios, and agreement
  python3 - "$1" <<'EOF'
import math, sys
rows = [l.split("|") for l in open(sys.argv[1]) if l.startswith("| ") and not l.startswith("| op ")]
ratios = [float(r[4]) for r in rows if len(r) > 8]
agree = sum(r[8].strip() == "True" for r in rows if len(r) > 8)
if ratios:
  print(f"{len(ratios)} ops, time ratio jaxdet/torchvision geo-mean "
        f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}, {agree} agree")
EOF
}
fig_train_bench() { grep -E '^(ratio|jaxdet  )' "$1" | sed -E 's/ \(step.*//; s/  +/ /g' | tr '\n' ';'; }
fig_export() { grep -E '^(best torchvision-ONNX|jax.jit / best)' "$1" | sed 's/ (>1.*//' | tr '\n' ';'; }
fig_train() { grep -E '^final:' "$1" | tail -n 1; grep -oE 'img_s=[0-9.]+' "$1" | tail -n 1; }

# --- environment ---
START_ALL=$(date +%s)
if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
  PY=$GPU_CHECK_PYTHON
  echo "using $PY (GPU_CHECK_PYTHON): nothing installed"
else
  if [[ $PLATFORM == cuda ]]; then
    VENV=${GPU_CHECK_VENV:-.venv-gpu}
    EXTRAS="dev,export,bench,gpu"
  else
    VENV=${GPU_CHECK_VENV:-.venv}
    EXTRAS="dev,export,bench"
  fi
  PY=$VENV/bin/python
  install() {  # run by `bash -c` under the step's timeout
    set -eo pipefail
    [[ -x $PY ]] || python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[$EXTRAS]"
    if [[ $PLATFORM == cuda ]]; then
      # onnxruntime (required by jax2onnx) and onnxruntime-gpu install the same module; put the
      # GPU build's files back last.
      local ort_gpu
      ort_gpu=$("$PY" -m pip show onnxruntime-gpu | sed -n 's/^Version: //p')
      "$PY" -m pip uninstall -q -y onnxruntime onnxruntime-gpu
      "$PY" -m pip install -q --no-deps "onnxruntime-gpu==$ort_gpu"
    fi
    "$PY" -m pip list 2>/dev/null | grep -E '^(jax|jaxlib|jax-cuda13-plugin|torch|torchvision|onnxruntime)[ -]'
  }
  export PY VENV EXTRAS PLATFORM
  export -f install
  STEPS="install $STEPS"
  run_step install 900 fig_install bash -c install
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several processes share the GPU (pytest workers)
if [[ $PLATFORM == cuda ]]; then
  export JAX_PLATFORMS=cuda
  DEVICE=gpu
  TESTS=(tests/models tests/ops tests/train)
  WORKERS=${GPU_CHECK_WORKERS:-8}
  OPS_ARGS=(--repeats 20)
  TRAIN_BENCH_ARGS=(--steps 5 --rounds 1)
  EXPORT_ARGS=(--repeats 10)
  # shapes/small (800/100 images) builds in seconds; 300 steps of 32 are 12 epochs of it.
  TRAIN_ARGS=(--config.dataset=shapes/small --config.total_steps=300 --config.eval_every=300
              --config.batch_size=32)
  # probe tests bench-ops bench-train bench-export train: 480 s (8 min) at most.
  read -r -a LIMITS <<<"${GPU_CHECK_LIMITS:-30 170 45 75 80 80}"
else
  export JAX_PLATFORMS=cpu
  DEVICE=cpu
  # Tiny: two test files, small benchmarks, 3 steps on shapes/tiny.
  TESTS=(tests/models/test_winograd.py tests/ops/test_coders.py)
  WORKERS=2
  OPS_ARGS=(--repeats 2)
  TRAIN_BENCH_ARGS=(--size 128 --batch 1 --steps 1 --rounds 1 --boxes 2)
  EXPORT_ARGS=(--size 128 --classes 4 --repeats 2)
  TRAIN_ARGS=(--config.dataset=shapes/tiny --config.total_steps=3 --config.eval_every=3
              --config.batch_size=4 --config.image_size=64 --config.model.width=0.0625
              --config.eval_batch_size=8)
  read -r -a LIMITS <<<"${GPU_CHECK_LIMITS:-60 240 240 240 240 240}"
fi

PROBE="
import jax, torch, onnxruntime as ort
dev = jax.devices()[0]
cuda = torch.cuda.is_available()
ort_cuda = 'CUDAExecutionProvider' in ort.get_available_providers()
print(f'probe: jax {jax.__version__} {dev.platform}:{dev.device_kind}; torch {torch.__version__} '
      f'cuda={cuda} {torch.cuda.get_device_name() if cuda else \"\"}; '
      f'onnxruntime {ort.__version__} cuda={ort_cuda}')
if '$DEVICE' == 'gpu':
  assert dev.platform == 'gpu', f'jax runs on {dev.platform}'
  assert cuda, 'torch sees no CUDA device'
  assert ort_cuda, f'onnxruntime providers: {ort.get_available_providers()}'
"
run_step probe "${LIMITS[0]}" fig_probe "$PY" -c "$PROBE"
run_step tests "${LIMITS[1]}" fig_tests "$PY" -m pytest "${TESTS[@]}" -q -p no:cacheprovider \
  -n "$WORKERS" --dist loadgroup
run_step bench-ops "${LIMITS[2]}" fig_ops "$PY" benchmarks/bench_ops.py --device "$DEVICE" \
  "${OPS_ARGS[@]}"
run_step bench-train "${LIMITS[3]}" fig_train_bench "$PY" benchmarks/bench_train.py \
  --device "$DEVICE" "${TRAIN_BENCH_ARGS[@]}"
run_step bench-export "${LIMITS[4]}" fig_export "$PY" benchmarks/bench_export.py \
  --device "$DEVICE" "${EXPORT_ARGS[@]}"
rm -rf "$OUT/train_run"
run_step train "${LIMITS[5]}" fig_train "$PY" -m jaxdet train --config experiments/shapes_yolo_anchor_free.py \
  --workdir "$OUT/train_run" --no-progress --config.data_dir="$OUT/tfds" \
  --config.tensorboard=false "${TRAIN_ARGS[@]}"

# --- the table ---
echo
echo "## jaxdet GPU check ($PLATFORM), $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - START_ALL )) s in all"
echo
echo "| step | result | seconds | key figure |"
echo "|---|---|---:|---|"
failed=0
for row in "${RESULTS[@]}"; do
  IFS='|' read -r name status seconds figure <<<"$row"
  echo "| $name | $status | $seconds | ${figure//|//} |"
  [[ $status == pass ]] || failed=$((failed + 1))
done
echo
echo "logs: $OUT/<step>.log"
exit $(( failed > 0 ))
