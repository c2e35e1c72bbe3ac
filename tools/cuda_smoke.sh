#!/usr/bin/env bash
# CUDA smoke test: proves the `cu117` install as far as a machine without a GPU can.
#
#   bash tools/cuda_smoke.sh            (scratch folder: $CUDA_SMOKE_DIR, default /tmp/swishtrain-cuda-smoke)
#
# 1. a scratch venv with the project installed (not editable) with its [dev,cu117] extras
# 2. a stub libcuda.so.1 (no driver here) generated from the cu* symbols the libraries need
# 3. imports, tests, `swishtrain --gpus 0`, `swishtrain launch`, the fused Swish op, cuDNN's
#    dependencies, with the stub's folder on LD_LIBRARY_PATH
# 4. machine and install facts
# Ends with a PASS/FAIL table; exits 1 if any step failed. Re-running reuses the venv (about 6 GB
# with the NVIDIA wheels) and refreshes only the swishtrain package itself from the checkout.
#
# train_cli is always the *installed* copy: every command runs with PYTHONSAFEPATH=1 (the
# current folder is not put on sys.path), outside the repo except pytest, which runs from the
# repo's tests/ (they have no __init__.py, so only tests/ joins sys.path, not the repo root).
# A pytest plugin written into the scratch folder prints which train_cli the tests imported.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE=${CUDA_SMOKE_DIR:-/tmp/swishtrain-cuda-smoke}
PYTHON311=${CUDA_SMOKE_PYTHON:-python3.11}
VENV=$SMOKE/venv
PY=$VENV/bin/python
SRC=$SMOKE/src          # a copy of the working tree: pip builds in the copy, not in the repo
STUB_DIR=$SMOKE/stub    # libcuda.so.1 and its generated source
TINY=$SMOKE/tiny-cifar  # synthetic CIFAR-10 binary batches
LOGS=$SMOKE/logs
PLUGIN_DIR=$SMOKE/pytest-plugin
STAMP=$VENV/.cuda-smoke-installed
TAIL=${CUDA_SMOKE_TAIL:-12}

mkdir -p "$SMOKE" "$LOGS"

STEP_IDS=() STEP_NAMES=() STEP_RESULTS=() STEP_NOTES=()
record() {  # id name PASS|FAIL|SKIP note
  STEP_IDS+=("$1") STEP_NAMES+=("$2") STEP_RESULTS+=("$3") STEP_NOTES+=("$4")
  printf -- '--> %s %s: %s%s\n' "$1" "$2" "$3" "${4:+ ($4)}"
}
header() { printf '\n==== %s ====\n' "$*"; }
indent() { sed 's/^/    /'; }
show_tail() {  # label file [lines]
  local n=${3:-$TAIL}
  if [[ -s $2 ]]; then
    echo "  $1 (last $n lines):"
    tail -n "$n" -- "$2" | cut -c1-400 | indent
  else
    echo "  $1: (empty)"
  fi
}
# run LOGNAME TIMEOUT CMD...: stdout and stderr to LOGS/LOGNAME.{out,err}; sets RC
run() {
  local name=$1 limit=$2
  shift 2
  RC=0
  timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || RC=$?
  echo "  exit code: $RC"
}
has() { grep -Eq -- "$1" "${@:2}" 2>/dev/null; }  # has REGEX FILE...: never fails the script

finish() {
  header "SUMMARY"
  local failed=0 i
  printf '%-4s %-44s %-6s %s\n' STEP WHAT RESULT NOTE
  printf '%-4s %-44s %-6s %s\n' ---- -------------------------------------------- ------ ----
  for i in "${!STEP_IDS[@]}"; do
    printf '%-4s %-44s %-6s %s\n' "${STEP_IDS[$i]}" "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" \
      "${STEP_NOTES[$i]}"
    [[ ${STEP_RESULTS[$i]} == FAIL ]] && failed=$((failed + 1))
  done
  echo
  echo "logs: $LOGS   scratch: $SMOKE"
  if ((DRIFTED)); then
    echo "note: the working tree changed during the run (installed $TREE_AT_INSTALL, now $(tree_hash)); re-run for a consistent result"
  fi
  if ((failed)); then
    echo "cuda-smoke: $failed step(s) FAILED"
    exit 1
  fi
  echo "cuda-smoke: all steps passed"
}

# ---------------------------------------------------------------------------------------------
header "1. scratch venv with swishtrain[dev,cu117] (not editable) in $VENV"
want=$(cat "$REPO/setup.cfg" "$REPO/pyproject.toml" | sha256sum | cut -c1-16)
rm -rf "$SRC" && mkdir -p "$SRC"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  # tracked and untracked-but-not-ignored files: no .venv, build/ or egg-info
  (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$SRC"
  echo "  source: working tree of $REPO at $(git -C "$REPO" rev-parse --short HEAD)" \
       "($(git -C "$REPO" status --porcelain | wc -l) changed/untracked path(s)), copied to $SRC"
else
  tar -C "$REPO" --exclude=.venv --exclude=.git --exclude=build --exclude='*.egg-info' -cf - . | tar -xf - -C "$SRC"
  echo "  source: $REPO copied to $SRC"
fi
tree_hash() {  # the working tree's files as pip and pytest see them
  if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -co --exclude-standard -z | sort -z | tar --null -T - -cf - --mtime=@0 --owner=0 --group=0 2>/dev/null | sha256sum | cut -c1-12) || true
  else
    echo unknown
  fi
}
TREE_AT_INSTALL=$(tree_hash)
drift() {  # warn when the checkout changed after it was copied and installed
  local now
  now=$(tree_hash)
  if [[ $now != "$TREE_AT_INSTALL" ]]; then
    echo "  WARNING: the repo's working tree changed since it was installed ($TREE_AT_INSTALL -> $now):" \
         "the tests below come from the newer checkout, train_cli from the installed copy"
    DRIFTED=1
  fi
}
DRIFTED=0
echo "  tree fingerprint: $TREE_AT_INSTALL"
install_ok=1
if [[ -x $PY && -f $STAMP && $(cat "$STAMP") == "$want" ]] && "$PY" -m pip show -q mxnet-cu117 2>/dev/null; then
  echo "  venv already installed (stamp $want): refreshing only the swishtrain package"
  run install-refresh 900 "$PY" -m pip install --disable-pip-version-check --progress-bar off \
    --no-deps --force-reinstall "$SRC"
  [[ $RC == 0 ]] || install_ok=0
  show_tail "pip" "$LOGS/install-refresh.out" 2
  ((install_ok)) || show_tail "pip stderr" "$LOGS/install-refresh.err"
else
  if [[ ! -x $PY ]]; then
    command -v "$PYTHON311" >/dev/null || { echo "  $PYTHON311 not found (set CUDA_SMOKE_PYTHON)"; install_ok=0; }
    ((install_ok)) && { "$PYTHON311" -m venv "$VENV" || install_ok=0; }
  fi
  if ((install_ok)); then
    echo "  pip install '$SRC[dev,cu117]' (about 2 GB of wheels; this takes a while)"
    start=$SECONDS
    run install 7200 "$PY" -m pip install --disable-pip-version-check --progress-bar off "$SRC[dev,cu117]"
    echo "  took $((SECONDS - start)) s"
    if [[ $RC == 0 ]]; then echo "$want" >"$STAMP"; else install_ok=0; fi
    show_tail "pip" "$LOGS/install.out" 3
    ((install_ok)) || show_tail "pip stderr" "$LOGS/install.err"
  fi
fi
if ((install_ok)); then
  SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "  python: $("$PY" -c 'import platform; print(platform.python_version())')  site-packages: $SITE"
  echo "  installed: $("$PY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | grep -Ei '^(swishtrain|mxnet)' | tr '\n' ' ')"
  record 1 "install swishtrain[dev,cu117]" PASS "venv $VENV"
else
  record 1 "install swishtrain[dev,cu117]" FAIL "see $LOGS/install*.err"
  for s in 2 3a 3b 3c 3d 3e 3f 3g 3h; do record "$s" "(needs the venv)" SKIP "install failed"; done
  finish
fi

# ---------------------------------------------------------------------------------------------
header "2. stub libcuda.so.1 in $STUB_DIR"
mkdir -p "$STUB_DIR"
LIBMXNET=$SITE/mxnet/libmxnet.so
mapfile -t NV_LIBS < <(find "$SITE/nvidia" -path '*/lib/lib*.so*' -type f 2>/dev/null | sort)
echo "  libmxnet.so: $LIBMXNET"
echo "  NVIDIA wheel libraries: ${#NV_LIBS[@]}"
# who links the driver directly (the others dlopen it at run time)
for lib in "$LIBMXNET" "${NV_LIBS[@]}"; do
  if objdump -p "$lib" 2>/dev/null | grep -q 'NEEDED *libcuda\.so'; then
    echo "  NEEDED libcuda.so.1: ${lib#"$SITE"/}"
  fi
done
# driver API names are cu + a capital (cuInit, cuMemAlloc_v2); cublas*, cudnn*, cuda* are not
undefined_cu() { nm -D --undefined-only "$1" 2>/dev/null | awk '{print $NF}' | grep -E '^cu[A-Z]' || true; }
{ for lib in "$LIBMXNET" "${NV_LIBS[@]}"; do undefined_cu "$lib"; done; } | sort -u >"$STUB_DIR/needed-versioned.txt"
if has '@' "$STUB_DIR/needed-versioned.txt"; then
  echo "  note: versioned driver symbols requested: $(grep -c @ "$STUB_DIR/needed-versioned.txt")"
fi
sed 's/@.*//' "$STUB_DIR/needed-versioned.txt" | sort -u >"$STUB_DIR/needed.txt"
{ for lib in "$LIBMXNET" "${NV_LIBS[@]}"; do
    nm -D --defined-only "$lib" 2>/dev/null | awk '{print $NF}' | sed 's/@.*//'; done; } | sort -u >"$STUB_DIR/defined-elsewhere.txt"
comm -23 "$STUB_DIR/needed.txt" "$STUB_DIR/defined-elsewhere.txt" >"$STUB_DIR/symbols.txt"
undefined_cu "$LIBMXNET" | sed 's/@.*//' | sort -u >"$STUB_DIR/libmxnet-needs.txt"
echo "  undefined cu* symbols: $(wc -l <"$STUB_DIR/symbols.txt") in all ($(wc -l <"$STUB_DIR/libmxnet-needs.txt") from libmxnet.so):" \
     "$(head -c 300 "$STUB_DIR/symbols.txt" | tr '\n' ' ')..."
{
  cat <<'EOF'
/* Generated by tools/cuda_smoke.sh: a libcuda.so.1 that loads and reports no device. */
#include <stddef.h>
typedef int CUresult;
#define CUDA_SUCCESS 0
#define CUDA_ERROR_NO_DEVICE 100
CUresult cuInit(unsigned int flags) { (void)flags; return CUDA_ERROR_NO_DEVICE; }
CUresult cuDriverGetVersion(int *version) { if (version) *version = 11070; return CUDA_SUCCESS; }
static const char *stub_name(CUresult e) {
  return e == CUDA_SUCCESS ? "CUDA_SUCCESS" : e == CUDA_ERROR_NO_DEVICE ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN";
}
CUresult cuGetErrorName(CUresult e, const char **s) { if (s) *s = stub_name(e); return CUDA_SUCCESS; }
CUresult cuGetErrorString(CUresult e, const char **s) {
  if (s) *s = e == CUDA_ERROR_NO_DEVICE ? "no CUDA-capable device is detected (stub libcuda.so.1, no NVIDIA driver)"
                                        : "unknown error (stub libcuda.so.1, no NVIDIA driver)";
  return CUDA_SUCCESS;
}
/* every other driver function the libraries link: no device */
EOF
  grep -vxE 'cuInit|cuDriverGetVersion|cuGetErrorName|cuGetErrorString' "$STUB_DIR/symbols.txt" |
    awk '{printf "CUresult %s(void) { return CUDA_ERROR_NO_DEVICE; }\n", $1}'
} >"$STUB_DIR/libcuda_stub.c"
stub_ok=1
gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$STUB_DIR/libcuda.so.1" "$STUB_DIR/libcuda_stub.c" \
  >"$LOGS/stub-gcc.log" 2>&1 || { stub_ok=0; show_tail "gcc" "$LOGS/stub-gcc.log"; }
missing=""
if ((stub_ok)); then
  nm -D --defined-only "$STUB_DIR/libcuda.so.1" | awk '{print $NF}' | sort -u >"$STUB_DIR/stub-defines.txt"
  missing=$(comm -23 "$STUB_DIR/libmxnet-needs.txt" "$STUB_DIR/stub-defines.txt" | tr '\n' ' ')
  echo "  built $STUB_DIR/libcuda.so.1: $(wc -l <"$STUB_DIR/stub-defines.txt") functions," \
       "soname $(objdump -p "$STUB_DIR/libcuda.so.1" | awk '/SONAME/ {print $2}')"
  echo "  libmxnet.so's cu* needs not in the stub: ${missing:-none}"
  echo "  ldd libmxnet.so | grep libcuda (stub folder on LD_LIBRARY_PATH):" \
       "$(LD_LIBRARY_PATH=$STUB_DIR ldd "$LIBMXNET" | grep 'libcuda\.so' | xargs)"
fi
if ((stub_ok)) && [[ -z $missing ]]; then
  record 2 "stub libcuda.so.1 covers libmxnet.so" PASS "$(wc -l <"$STUB_DIR/symbols.txt") cu* symbols"
else
  record 2 "stub libcuda.so.1 covers libmxnet.so" FAIL "${missing:+missing: $missing}"
fi

# ---------------------------------------------------------------------------------------------
# Step 3 environment: the stub's folder on LD_LIBRARY_PATH, the venv first on PATH, the installed
# train_cli (PYTHONSAFEPATH), no bytecode or pytest cache written into the repo, the fused Swish
# compiled into the scratch folder (its cache key does not tell the CPU and CUDA builds apart).
export LD_LIBRARY_PATH=$STUB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$VENV/bin:$PATH PYTHONSAFEPATH=1 PYTHONDONTWRITEBYTECODE=1
export SWISHTRAIN_CACHE=$SMOKE/cache PYTHONPATH=$PLUGIN_DIR
mkdir -p "$PLUGIN_DIR"
cat >"$PLUGIN_DIR/cuda_smoke_origin.py" <<'EOF'
"""Written by tools/cuda_smoke.sh: says which train_cli the tests imported."""
import sys


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("train_cli")
    where = getattr(module, "__file__", None) or "not imported"
    terminalreporter.write_line(f"[cuda-smoke] train_cli imported from {where}; "
                                f"mxnet imported: {'mxnet' in sys.modules}")
EOF
cd "$SMOKE"
echo
echo "  LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
echo "  train_cli under test: $("$PY" -c 'import train_cli; print(train_cli.__file__)' 2>&1) (the installed copy)"

header "3a. preload NVIDIA's libraries, then import mxnet"
run 3a 600 "$PY" -c "from train_cli import cuda_libs; print(len(cuda_libs.preload()), 'libraries preloaded'); import mxnet; f = mxnet.runtime.Features(); print('mxnet', mxnet.__version__, {k: f.is_enabled(k) for k in ('CUDA','CUDNN','NCCL','CUDA_RTC','TENSORRT','MKLDNN','DIST_KVSTORE')})"
show_tail stdout "$LOGS/3a.out"
show_tail stderr "$LOGS/3a.err" 6
if [[ $RC == 0 ]] && has "'CUDA': True" "$LOGS/3a.out" && has "'CUDNN': True" "$LOGS/3a.out" && has "'NCCL': True" "$LOGS/3a.out"; then
  record 3a "preload + import mxnet (CUDA build)" PASS "$(grep -o '^[0-9]* libraries preloaded' "$LOGS/3a.out"); CUDA, CUDNN, NCCL enabled"
else
  record 3a "preload + import mxnet (CUDA build)" FAIL "exit $RC"
fi

header "3b. import mxnet WITHOUT the preload (expected to fail naming a missing library)"
run 3b 600 "$PY" -c "import mxnet; f = mxnet.runtime.Features(); print('mxnet', mxnet.__version__, {k: f.is_enabled(k) for k in ('CUDA','CUDNN','NCCL')})"
show_tail stdout "$LOGS/3b.out" 3
show_tail stderr "$LOGS/3b.err" 3
so=$(grep -Eo 'lib[A-Za-z0-9_]+\.so[0-9.]*: cannot open shared object file' "$LOGS/3b.err" | head -1 | cut -d: -f1 || true)
if [[ $RC != 0 && $so =~ ^lib(cu|nv|nccl) ]]; then
  record 3b "import mxnet without preload fails" PASS "as expected: $so not found"
else
  record 3b "import mxnet without preload fails" FAIL "exit $RC${so:+, missing $so}"
fi

header "3c. pytest --collect-only -q tests (from $REPO)"
drift
cd "$REPO"
run 3c 900 "$PY" -m pytest -p no:cacheprovider -p cuda_smoke_origin --collect-only -q tests
cd "$SMOKE"
echo "  last 3 lines:"
grep -v '^\[cuda-smoke\]' "$LOGS/3c.out" | tail -n 3 | indent || true
if has '^(ERROR|E ) ' "$LOGS/3c.out"; then
  echo "  collection errors (first of each):"
  grep -E '^ERROR |^E +[A-Za-z]*(Error|Exception)' "$LOGS/3c.out" | sort | uniq -c | sort -rn | head -8 | cut -c1-300 | indent
fi
grep '^\[cuda-smoke\]' "$LOGS/3c.out" | indent || true
show_tail stderr "$LOGS/3c.err" 4
collected=$(grep -Eo '[0-9]+ tests? collected|[0-9]+ errors?' "$LOGS/3c.out" | tr '\n' ' ' || true)
if [[ $RC == 0 ]] && ! has '^ERROR ' "$LOGS/3c.out"; then
  record 3c "pytest --collect-only tests" PASS "${collected:-collected}"
else
  record 3c "pytest --collect-only tests" FAIL "exit $RC; $(tail -n 1 "$LOGS/3c.out" | cut -c1-120)"
fi

header "3d. pytest -q tests/test_install.py tests/gpu"
drift
cd "$REPO"
run 3d 1800 "$PY" -m pytest -p no:cacheprovider -p cuda_smoke_origin -q -rfEs tests/test_install.py tests/gpu
cd "$SMOKE"
echo "  failures, errors and skips:"
grep -E '^(FAILED|ERROR|SKIPPED) ' "$LOGS/3d.out" | cut -c1-300 | indent || echo "    none"
if has '^E ' "$LOGS/3d.out"; then
  echo "  assertion/exception lines:"
  grep -E '^E ' "$LOGS/3d.out" | head -12 | cut -c1-300 | indent
fi
grep '^\[cuda-smoke\]' "$LOGS/3d.out" | indent || true
echo "  result: $(tail -n 1 "$LOGS/3d.out")"
if [[ $RC == 0 ]]; then
  record 3d "pytest test_install.py + gpu/" PASS "$(tail -n 1 "$LOGS/3d.out" | tr -d '=' | xargs | cut -c1-80)"
else
  record 3d "pytest test_install.py + gpu/" FAIL "$(tail -n 1 "$LOGS/3d.out" | tr -d '=' | xargs | cut -c1-80)"
fi

header "3e. swishtrain --gpus 0 on tiny synthetic CIFAR-10 (expected: one-line driver error)"
"$PY" - "$TINY" <<'EOF'
import sys
from pathlib import Path
import numpy as np
folder = Path(sys.argv[1])
folder.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    labels = rng.integers(0, 10, size=(40, 1), dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(40, 3 * 32 * 32), dtype=np.uint8)
    np.concatenate([labels, pixels], axis=1).tofile(folder / f"{name}.bin")  # 1 + 3072 bytes each
print(f"  tiny CIFAR-10: {folder} ({len(list(folder.glob('*.bin')))} files x 40 images)")
EOF
rm -rf "$SMOKE/run" "$SMOKE/launched"
run 3e 600 "$VENV/bin/swishtrain" --gpus 0 --model vgg11 --width 0.125 --epochs 1 --batch-size 16 \
  --data-dir "$TINY" --run-dir "$SMOKE/run"
show_tail stdout "$LOGS/3e.out" 5
show_tail stderr "$LOGS/3e.err" 8
# the error must be one line, the last; "warning: ..." lines before it are allowed
err_lines=$(grep -v '^warning: ' "$LOGS/3e.err" | grep -cv '^$' || true)
if [[ $RC == 1 || $RC == 2 ]] && ! has 'Traceback' "$LOGS/3e.err" "$LOGS/3e.out" &&
   [[ $err_lines == 1 ]] && tail -n 1 "$LOGS/3e.err" | grep -Eiq '^Error: .*(driver|gpu|cuda)'; then
  record 3e "swishtrain --gpus 0: one-line error" PASS "exit $RC: $(tail -n 1 "$LOGS/3e.err" | cut -c1-70)..."
else
  record 3e "swishtrain --gpus 0: one-line error" FAIL "exit $RC, $err_lines non-warning stderr line(s)$(has Traceback "$LOGS/3e.err" && echo ', traceback')"
fi

header "3f. swishtrain launch -n 1 (scheduler + server + worker; timeout 300 s)"
start=$SECONDS
run 3f 300 "$VENV/bin/swishtrain" launch -n 1 -- --gpus 0 --model vgg11 --width 0.125 --epochs 1 \
  --batch-size 16 --data-dir "$TINY" --run-dir "$SMOKE/launched"
echo "  took $((SECONDS - start)) s"
show_tail stdout "$LOGS/3f.out" 15
show_tail stderr "$LOGS/3f.err" 8
if [[ $RC == 124 || $RC == 137 ]]; then
  record 3f "swishtrain launch -n 1" FAIL "timed out (hung) after 300 s"
elif [[ $RC != 0 ]] && has '^\[(worker 0|rank 0)\].*(driver|GPU|cuInit)' "$LOGS/3f.out" "$LOGS/3f.err"; then
  record 3f "swishtrain launch -n 1" PASS "exit $RC; worker ended with the driver error"
else
  record 3f "swishtrain launch -n 1" FAIL "exit $RC; the worker's driver error not seen"
fi

header "3g. python -m train_cli.model.swish_op (fused Swish against the CUDA build)"
# the brief's command; a checkout with train_cli/startup.py builds it with `startup build-swish`
# (what `make install` runs there), which then decides the step
run 3g 900 "$PY" -m train_cli.model.swish_op
show_tail stdout "$LOGS/3g.out" 6
show_tail stderr "$LOGS/3g.err" 6
G_RC=$RC G_WHAT="python -m train_cli.model.swish_op" G_LOG=3g
if "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("train_cli.startup") is None)' 2>/dev/null; then
  echo "  the installed train_cli has train_cli.startup: python -m train_cli.startup build-swish"
  run 3g-startup 900 "$PY" -m train_cli.startup build-swish
  show_tail stdout "$LOGS/3g-startup.out" 6
  show_tail stderr "$LOGS/3g-startup.err" 6
  G_RC=$RC G_WHAT="startup build-swish" G_LOG=3g-startup
fi
if [[ $G_RC == 0 ]] && has '^fused Swish operators loaded' "$LOGS/$G_LOG.out"; then
  record 3g "fused Swish op compiles and loads" PASS "$G_WHAT: $(tail -n 1 "$LOGS/$G_LOG.out" | cut -c1-60)..."
else
  why=$(tail -n 1 "$LOGS/$G_LOG.err" 2>/dev/null || true)
  [[ -n $why ]] || why=$(tail -n 1 "$LOGS/$G_LOG.out" 2>/dev/null || true)
  record 3g "fused Swish op compiles and loads" FAIL "$G_WHAT exit $G_RC: $(cut -c1-90 <<<"$why")"
fi

header "3h. libcudnn_cnn_infer.so.8: ldd and a load"
CNN=$SITE/nvidia/cudnn/lib/libcudnn_cnn_infer.so.8
if [[ -f $CNN ]]; then
  ldd "$CNN" >"$LOGS/3h.ldd" 2>&1 || true
  indent <"$LOGS/3h.ldd"
  notfound=$(grep 'not found' "$LOGS/3h.ldd" | awk '{print $1}' | tr '\n' ' ' || true)
  run 3h 120 "$PY" -c "import ctypes, sys; ctypes.CDLL(sys.argv[1]); print('loaded', sys.argv[1].rsplit('/', 1)[1])" "$CNN"
  show_tail "ctypes load" "$LOGS/3h.out" 2
  show_tail stderr "$LOGS/3h.err" 3
  if [[ -z $notfound && $RC == 0 ]]; then
    record 3h "libcudnn_cnn_infer.so.8 dependencies" PASS "none not found; loads"
  else
    record 3h "libcudnn_cnn_infer.so.8 dependencies" FAIL "${notfound:+not found: $notfound}load exit $RC"
  fi
else
  echo "  $CNN: no such file"
  record 3h "libcudnn_cnn_infer.so.8 dependencies" FAIL "file missing"
fi

# ---------------------------------------------------------------------------------------------
header "4. machine and install"
echo "  $(lscpu | grep 'Model name' | xargs)"
echo "  gpu: $(command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 | head -1 || echo 'no nvidia-smi')"
"$PY" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | grep -Ei '^(mxnet|nvidia-|numpy=)' | indent || true
echo "  venv size: $(du -sh "$VENV" | cut -f1)   ($VENV)"
record 4 "machine and install facts" PASS "venv $(du -sh "$VENV" | cut -f1)"

finish
