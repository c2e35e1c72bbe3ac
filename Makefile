# swishtrain: `make swish` trains the blog's Swish baseline, `make test` runs the tests.
# Everything is installed into .venv from nothing; no other setup is needed.

# mxnet 1.9.1 needs numpy<1.24, which has wheels up to Python 3.11 only.
PYTHON ?= $(shell command -v python3.11 2>/dev/null)
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=
# `make install CUDA=11.7`: MXNet's CUDA 11.7 build and NVIDIA's libraries instead of the CPU
# build (README "GPUs"); `make install CUDA=cpu` goes back. Every other target keeps the build
# the venv has. MXNet's last release has no build for a newer CUDA.
CUDA   ?= $(if $(wildcard $(VENV)/.installed-cu117),11.7,cpu)
ifeq ($(CUDA),cpu)
  FLAVOUR := cpu
  OTHER   := mxnet-cu117 $(shell $(BIN)/python -m pip list --format=freeze 2>/dev/null | sed -n 's/^\(nvidia-[a-z-]*-cu11\)==.*/\1/p')
else ifeq ($(CUDA),11.7)
  FLAVOUR := cu117
  OTHER   := mxnet
else
  $(error CUDA=$(CUDA): MXNet 1.9.1's newest CUDA build is for CUDA 11.7 (it runs on any driver for CUDA 11.7 or newer): make install CUDA=11.7, or CUDA=cpu)
endif
STAMP  := $(VENV)/.installed-$(FLAVOUR)
EXTRAS := dev,$(FLAVOUR)
# `make test` (and `make bench`) also install the `bench` extra, PyTorch 2.13.0: the suite runs
# every benchmark at a tiny size, the PyTorch reference included (tests/test_benchmarks.py).
# With the CPU wheel on disk: ~27 s and 878 MB more in the venv. Not in `make install`: from PyPI
# that version is a CUDA build of several GB, which training does not need.
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install system-packages test lint relu swish compare crop-flip bench gpu-check cuda-smoke clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: python3.11 not found on PATH. swishtrain needs Python 3.11 (mxnet 1.9.1 needs" \
	       "numpy<1.24, which has no wheels for newer Pythons). Install it (e.g. pyenv install" \
	       "3.11.7) or point to it: make PYTHON=/path/to/python3.11"; exit 1; fi
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'), swishtrain needs 3.11: make PYTHON=/path/to/python3.11"; exit 1; }
	"$(PYTHON)" -m venv $(VENV)
	@# one MXNet per venv: the CPU and the CUDA wheel install the same `mxnet` package
	@for package in $(OTHER); do \
	  if $(BIN)/python -m pip show --quiet $$package 2>/dev/null; then \
	    $(BIN)/python -m pip uninstall --quiet -y $$package; fi; done
	@rm -f $(VENV)/.installed-*
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@# compile the fused Swish operators now rather than at the first run (falls back if it can't)
	-$(BIN)/python -m train_cli.startup build-swish
	@touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS),bench]'
	@touch $@

# `make test` also installs, with apt-get as root, what tests/*/test_slurm_*.py start as a
# private one-node cluster: Debian's slurmctld, slurmd, slurm-client and munge (Slurm 22.05; 8
# packages, 3.5 MB download, 13 MB on disk, ~13 s). No daemon is configured or left running.
# Without apt or root it says so and those tests skip.
system-packages:
	@bash tools/install_slurm.sh

test: install system-packages $(if $(filter cpu,$(FLAVOUR)),$(BENCH_STAMP))
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/python -m ruff check train_cli tests

# The 2018 blog runs as the script really ran them (configs/blog-*.toml, docs/REPRODUCING.md).
# Each target trains into runs/<name>; run again, it resumes an interrupted run, and leaves a
# finished one alone.
RUNS := runs
train_or_resume = if [ -f $(2)/summary.json ]; then echo "$(2) is finished"; \
	elif [ -f $(2)/last.ckpt ]; then $(BIN)/swishtrain resume $(2) $(ARGS); \
	else $(BIN)/swishtrain --config $(1) --run-dir $(2) --overwrite $(ARGS); fi

relu: install
	@$(call train_or_resume,configs/blog-vgg16_bn.toml,$(RUNS)/blog-vgg16_bn)

swish: install
	@$(call train_or_resume,configs/blog-vgg16_bn_swish.toml,$(RUNS)/blog-vgg16_bn_swish)

# Both blog runs, then their comparison table and learning curves (needs the plot extra).
compare: relu swish
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[plot]'
	$(BIN)/swishtrain compare $(RUNS)/blog-vgg16_bn $(RUNS)/blog-vgg16_bn_swish \
	  --plot $(RUNS)/blog-compare.png

# The same networks with the standard pad-and-crop + flip augmentation.
crop-flip: install
	@$(call train_or_resume,configs/crop-flip-vgg16_bn_swish.toml,$(RUNS)/crop-flip-vgg16_bn_swish)

# Throughput of ours against PyTorch eager (installs the bench extra: torch, CPU build), for every
# ISA class this CPU can run: AVX2 (math libraries capped, as on AMD EPYC / most laptops) and, on
# AVX-512 CPUs, AVX-512; one column per class (docs/PERFORMANCE.md). ARGS=--quick: train step
# only (minutes instead of ~40 at full width); ARGS="--isa avx2": one class.
# On a CPU with AMX, also --dtype bfloat16 against PyTorch float32 eager and bfloat16 autocast
# (native ISA; of ARGS only --quick carries over).
bench: install $(BENCH_STAMP)
	$(BIN)/python benchmarks/vs_pytorch.py $(ARGS)
	@if $(BIN)/python -c 'import sys; from train_cli import cpu; from train_cli.training import \
	  precision as p; sys.exit(p.bfloat16_isa(cpu.flags()) != p.AMX_ISA)'; then \
	  $(BIN)/python benchmarks/vs_pytorch.py --dtype bfloat16 $(filter --quick,$(ARGS)); \
	else echo "(no AMX on this CPU: --dtype bfloat16 not measured)"; fi

# On a machine with an NVIDIA GPU: install the CUDA build, then PASS/FAIL lines for the preflight,
# float32 and float16 steps, 1 vs 2 GPUs, a killed and resumed run, and evaluation on the CPU.
# Without a GPU it says so in one line and exits 2.
gpu-check:
	@command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || { \
	  echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi finds none); run it where one is"; exit 2; }
	$(MAKE) install CUDA=11.7
	$(BIN)/python -m train_cli.gpu_check $(ARGS)

# The CUDA install, proven as far as a machine without a GPU can: the real mxnet-cu117 and
# NVIDIA's wheels in a scratch venv (about 2 GB of downloads; not in CI), a stub libcuda.so.1,
# then import, test collection, the launcher's server command and `--gpus 0` up to its driver
# error (README "GPUs"; CUDA_SMOKE_DIR chooses the scratch folder).
cuda-smoke:
	bash tools/cuda_smoke.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
