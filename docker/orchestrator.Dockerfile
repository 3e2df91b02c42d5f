# The orchestrator: the farm package on Debian bookworm's Python, under tini; ffmpeg for
# preview videos unless --build-arg WITH_FFMPEG=0.
#   make images        (or: docker build -f docker/orchestrator.Dockerfile -t blender-farm/orchestrator .)
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

# ---- runtime ----
FROM ${BASE_IMAGE}
ARG WITH_FFMPEG=1
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
    $(if [ "$WITH_FFMPEG" = 1 ]; then echo ffmpeg; fi) \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group farm \
 && mkdir -p /var/lib/farm /var/lib/farm-join /scenes \
 && chown farm:farm /var/lib/farm /var/lib/farm-join
COPY --from=build /opt/farm /opt/farm
COPY docker/healthcheck.py /opt/farm/healthcheck.py
ENV PATH=/opt/farm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FARM_HOST=0.0.0.0 \
    FARM_PORT=8000 \
    FARM_DATA_DIR=/var/lib/farm \
    FARM_SCENES_DIR=/scenes
WORKDIR /home/farm
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "/opt/farm/healthcheck.py"]
ENTRYPOINT ["tini", "--"]
CMD ["orchestrator", "--host", "0.0.0.0", "--port", "8000"]
# Last and small: the project itself, so a source edit rebuilds only these layers
# (every instruction costs a container commit, seconds on some storage drivers).
COPY --from=build /dist /tmp/dist
RUN /opt/farm/bin/pip install --disable-pip-version-check --no-cache-dir --no-deps --no-index \
    /tmp/dist/*.whl \
 && rm -rf /tmp/dist
USER farm
