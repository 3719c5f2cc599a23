# modelc: the README's two commands are `make demo` and `make test`.
#
# Both share one idempotent set-up: a virtual environment in .venv with modelc (editable), its
# test extra, the CPU build of torch and onnxscript, plus the system toolchains that the
# toolchain-marked tests drive (cc, arm-none-eabi-gcc with newlib, qemu-system-arm). The Python
# part reinstalls only when pyproject.toml is newer than the stamp; the toolchain part only calls
# apt-get for packages that are missing, and never fails the set-up (tests that need a missing
# toolchain say so themselves).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.modelc-stamp
# Pinned exactly: an unpinned `torch` resolves to a multi-GB CUDA build; 2.13.0 is the CPU wheel.
TORCH := torch==2.13.0
PYTEST_WORKERS ?= 2
# Debian packages: the mcu target's cross compiler, its C library, and the emulator that runs it.
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
APT_LOG := build/apt.log
PIP_LOG := build/pip.log

.PHONY: help demo test setup python-env toolchains demo-model lint format clean distclean

help:
	@echo "make demo        set up, then compile examples/demo_cnn.onnx and compare with onnxruntime"
	@echo "make test        set up, then run the test suite (pytest -n $(PYTEST_WORKERS))"
	@echo "make setup       only the set-up: .venv + Python packages + system toolchains"
	@echo "make toolchains  only the system toolchains (cc, arm-none-eabi-gcc, qemu-system-arm)"
	@echo "make demo-model  regenerate examples/demo_cnn.onnx"
	@echo "make lint        ruff check + ruff format --check"
	@echo "make format      ruff format + ruff check --fix"
	@echo "make clean       remove build outputs and caches (keeps .venv)"
	@echo "make distclean   clean, and remove .venv"

demo: setup
	$(PY) examples/demo.py

# pytest's exit status passes through, so "no tests collected" (5) fails the run as it should.
test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) tests

setup: python-env toolchains

python-env: $(STAMP)

$(PY):
	@echo "== creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { \
		echo "modelc set-up: '$(PYTHON) -m venv' failed; install python3-venv (Debian) and retry" >&2; \
		rm -rf $(VENV); exit 1; }

$(STAMP): pyproject.toml | $(PY)
	@echo "== installing modelc[test,tune,distributed,bench], $(TORCH) and onnxscript into $(VENV)"
	@mkdir -p build
	@$(PY) -m pip install --progress-bar off -e '.[test,tune,distributed,bench]' '$(TORCH)' onnxscript >$(PIP_LOG) 2>&1 \
		|| { tail -n 40 $(PIP_LOG); echo "modelc set-up: pip install failed (log: $(PIP_LOG))" >&2; exit 1; }
	@touch $(STAMP)

# Every branch ends in `true`: a missing toolchain is a notice, never a failed set-up.
toolchains:
	@missing=""; \
	command -v cc >/dev/null 2>&1 || missing="gcc"; \
	if command -v dpkg-query >/dev/null 2>&1; then \
		for p in $(APT_PACKAGES); do \
			dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" \
				|| missing="$$missing $$p"; \
		done; \
	else \
		for t in arm-none-eabi-gcc qemu-system-arm; do \
			command -v "$$t" >/dev/null 2>&1 || missing="$$missing $$t"; \
		done; \
	fi; \
	missing=$${missing# }; \
	if [ -z "$$missing" ]; then \
		true; \
	elif ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "notice: no apt-get here; install yourself: $$missing (the toolchain tests need them)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "notice: not root; to get every toolchain test: sudo apt-get install -y $$missing"; \
	else \
		echo "== installing system toolchains: $$missing (log: $(APT_LOG))"; \
		mkdir -p build; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt_install() { apt-get install -y -q --no-install-recommends $$missing >>$(APT_LOG) 2>&1; }; \
		apt_install || { apt-get update -q >>$(APT_LOG) 2>&1 && apt_install; } \
			|| echo "notice: apt-get could not install $$missing (see $(APT_LOG)); continuing"; \
	fi

demo-model: python-env
	$(PY) examples/make_demo_model.py

lint: python-env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: python-env
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf build dist .pytest_cache .ruff_cache out
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
