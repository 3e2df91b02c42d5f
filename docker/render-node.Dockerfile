# The render node under tini, with two Blenders: 5.0 as a Python module (bpy, from PyPI: the
# default engine, warm slots) and Debian bookworm's 3.4 binary (`--blender /usr/bin/blender`).
#   make images        (or: docker build -f docker/render-node.Dockerfile -t blender-farm/render-node .)
# Without bpy (an image ~1 GB smaller, Blender 3.4 only): --build-arg BPY=0.
# Another Debian Blender: --build-arg BASE_IMAGE=<a Debian/Ubuntu image whose `blender` you want>.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- build: a virtualenv with the dependencies, and a wheel of the farm package ----
# (Identical to the other image's build stages, so the two images share these cached layers.)
FROM ${BASE_IMAGE} AS python
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# Only the dependency list: an edit elsewhere in pyproject.toml (tool settings, the version)
# or in README.md leaves the dependency layer of the next stage cached.
FROM python AS requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' >/requirements.txt

FROM python AS deps
# docker/wheels holds pre-downloaded wheels when build containers cannot reach PyPI
# (docker/build-images.sh fills it); empty means "use PyPI".
COPY docker/wheels/ /wheels/
COPY --from=requirements /requirements.txt /requirements.txt
RUN set -eu; \
    opts=""; if ls /wheels/*.whl >/dev/null 2>&1; then opts="--no-index --find-links /wheels"; fi; \
    python3 -m venv /opt/farm; \
    /opt/farm/bin/pip install $opts -r /requirements.txt

FROM deps AS build
COPY pyproject.toml README.md /src/
COPY farm_common /src/farm_common
COPY farm_pack /src/farm_pack
COPY render_node /src/render_node
COPY orchestrator /src/orchestrator
# The project itself as a wheel, outside the venv, so the venv stays as it was (no .pyc of
# pip's either) and the runtime stage's copy of it stays cached.
RUN set -eu; \
    opts=""; if ls /wheels/*.whl >/dev/null 2>&1; then opts="--no-index --find-links /wheels"; fi; \
    PYTHONDONTWRITEBYTECODE=1 /opt/farm/bin/pip wheel --no-deps $opts -w /dist /src

# ---- bpy: Blender 5.0 as a Python module, in the venv (its own stage: the other image shares
# the ones above) ----
FROM python AS bpy-requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["optional-dependencies"]["bpy"]))' >/requirements-bpy.txt

# From `deps`, not `build`: a source edit leaves this big layer cached. docker/bpy-wheels holds
# the bpy wheel when build containers cannot reach PyPI (build-images.sh), like docker/wheels.
FROM deps AS engine
ARG BPY=1
COPY --from=bpy-requirements /requirements-bpy.txt /requirements-bpy.txt
COPY docker/bpy-wheels/ /bpy-wheels/
RUN set -eu; \
    if [ "$BPY" = 1 ]; then \
        opts=""; if ls /bpy-wheels/*.whl >/dev/null 2>&1; then \
            opts="--no-index --find-links /bpy-wheels --find-links /wheels"; fi; \
        /opt/farm/bin/pip install $opts -r /requirements-bpy.txt; \
    fi

# ---- runtime ----
FROM ${BASE_IMAGE}
ARG BLENDER_PACKAGE=blender
ENV DEBIAN_FRONTEND=noninteractive
# Blender pulls in python3.11 itself; python3 is named for the venv's interpreter link. bpy
# links a few X11/GL client libraries; EGL (Mesa) lets it render EEVEE without a display.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini ${BLENDER_PACKAGE} \
        libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 libegl-mesa0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --uid 10002 --user-group farm-blender \
 && mkdir -p /var/lib/farm /scenes
COPY --from=engine /opt/farm /opt/farm
COPY docker/healthcheck.py /opt/farm/healthcheck.py
# The join token's volume (compose.yaml), owned by the orchestrator's user (10001) whichever
# container creates it first: Swarm starts services in no order.
RUN mkdir -p /var/lib/farm-join && chown 10001:10001 /var/lib/farm-join
ENV PATH=/opt/farm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FARM_HOST=0.0.0.0 \
    FARM_PORT=8100 \
    FARM_DATA_DIR=/var/lib/farm \
    FARM_SCENES_DIR=/scenes \
    FARM_BLENDER=auto
WORKDIR /var/lib/farm
EXPOSE 8100
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/farm/healthcheck.py"]
# tini is PID 1: it forwards SIGTERM to render-node and reaps any orphaned Blender.
# render-node runs as root in here so that Blender can run as farm-blender, which may write
# only its job's folders (--sandbox auto picks that: Docker's seccomp profile forbids the user
# namespaces of bubblewrap). compose.yaml and the k8s manifest drop every capability but the
# few this needs.
ENTRYPOINT ["tini", "--"]
CMD ["render-node", "--host", "0.0.0.0", "--port", "8100"]
# Last and small: the project itself, so a source edit rebuilds only these layers
# (every instruction costs a container commit, seconds on some storage drivers).
COPY --from=build /dist /tmp/dist
RUN /opt/farm/bin/pip install --disable-pip-version-check --no-cache-dir --no-deps --no-index \
    /tmp/dist/*.whl \
 && rm -rf /tmp/dist
