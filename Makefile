# swishtrain: `make swish` trains the blog's Swish baseline, `make test` runs the tests.
# Everything is installed into .venv from nothing; no other setup is needed.

# mxnet 1.9.1 needs numpy<1.24, which has wheels up to Python 3.11 only.
PYTHON ?= $(shell command -v python3.11 2>/dev/null)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install test lint relu swish crop-flip clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: python3.11 not found on PATH. swishtrain needs Python 3.11 (mxnet 1.9.1 needs" \
	       "numpy<1.24, which has no wheels for newer Pythons). Install it (e.g. pyenv install" \
	       "3.11.7) or point to it: make PYTHON=/path/to/python3.11"; exit 1; fi
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'), swishtrain needs 3.11: make PYTHON=/path/to/python3.11"; exit 1; }
	"$(PYTHON)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# compile the fused Swish operators now rather than at the first run (falls back if it can't)
	-$(BIN)/python -m train_cli.swish_op
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/python -m ruff check train_cli tests

# The 2018 blog runs: VGG16-BN, batch 128, lr 0.1 stepped at 10/20/30, 40 epochs, flip only.
relu: install
	$(BIN)/swishtrain --config configs/blog-vgg16_bn.toml $(ARGS)

swish: install
	$(BIN)/swishtrain --config configs/blog-vgg16_bn_swish.toml $(ARGS)

# The same networks with the standard pad-and-crop + flip augmentation.
crop-flip: install
	$(BIN)/swishtrain --config configs/crop-flip-vgg16_bn_swish.toml $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
