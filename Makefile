# The front door: `make demo` renders the sample scene on a local farm, `make test` runs everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint fmt bench images e2e-images system-deps clean addon

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bpy]'
	touch $(STAMP)

venv: $(STAMP)

# System packages from Debian's: Blender, ffmpeg (preview videos), Chromium (browser tests),
# debootstrap (offline base image), bubblewrap (Blender's sandbox), Xvfb (Blender's UI in the
# add-on's test). Installed when missing and we are root; else we say what to do.
# bpy (Blender 5 as a Python module) links a few X11/GL client libraries.
BPY_LIBS := libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1
SYSTEM_PACKAGES := blender ffmpeg chromium fonts-dejavu-core debootstrap bubblewrap xvfb xauth $(BPY_LIBS)
system-deps:
	@missing=""; \
	for cmd in blender ffmpeg chromium debootstrap bwrap xvfb-run xauth; do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	for lib in $(BPY_LIBS); do dpkg -s $$lib >/dev/null 2>&1 || missing="$$missing $$lib"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing from Debian's packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
		else \
			echo "missing:$$missing -- install them: sudo apt-get install $(SYSTEM_PACKAGES)"; \
		fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The images are built before pytest, never under a test's timeout (a fresh machine takes
# minutes); the e2e tests then use them as built (FARM_E2E_BUILD=0).
test: system-deps $(STAMP) lint addon e2e-images
	FARM_E2E_BUILD=0 $(BIN)/pytest -ra --durations=25

demo: system-deps $(STAMP)
	$(BIN)/python -m orchestrator.client.demo

bench: system-deps $(STAMP)
	$(BIN)/python -m benchmarks

images:
	bash docker/build-images.sh

# The Blender add-on: dist/farm_submit-VERSION.zip, bundling the blender-asset-tracer wheel of
# the version `farm` runs with (downloaded from PyPI once, into dist/wheels).
ADDON_WHEELS := dist/wheels
addon: $(STAMP)
	@bat=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('blender-asset-tracer'))"); \
	test -f $(ADDON_WHEELS)/blender_asset_tracer-$$bat-py3-none-any.whl || \
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: "blender-asset-tracer==$$bat" -d $(ADDON_WHEELS)
	$(BIN)/python blender_addon/build.py --wheels $(ADDON_WHEELS) --out dist

# For `make test`: without a Docker engine there is nothing to build, and the e2e tests skip
# saying so.
e2e-images:
	@if docker info >/dev/null 2>&1; then bash docker/build-images.sh; \
	else echo "no Docker engine answers: not building images; the e2e tests will be skipped"; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist
