# The front door: `make demo` renders the sample scene on a local farm, `make test` runs everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fmt bench images system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Blender (and ffmpeg for preview videos) from Debian's packages, when missing and we are root.
system-deps:
	@if ! command -v blender >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends blender ffmpeg; \
		else \
			echo "blender/ffmpeg missing: install them (e.g. sudo apt-get install blender ffmpeg)"; \
		fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: system-deps $(STAMP) lint
	$(BIN)/pytest -ra

demo: system-deps $(STAMP)
	$(BIN)/python -m orchestrator.demo

bench: system-deps $(STAMP)
	$(BIN)/python -m benchmarks

images:
	bash docker/build-images.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
