#!/usr/bin/env bash
# Builds the farm images (render-node, orchestrator). When the base image cannot be pulled
# (no registry reachable), builds it locally from Debian's packages with debootstrap and
# `docker import`s it under the tag the Dockerfiles expect, so the Dockerfiles stay unchanged.
#
# Environment knobs:
#   BASE_IMAGE      base image tag the Dockerfiles build FROM   (default debian:bookworm-slim)
#   IMAGE_PREFIX    image name prefix                            (default blender-farm)
#   IMAGE_TAG       tag of the built images                      (default latest)
#   DEBIAN_MIRROR   mirror for debootstrap                       (default: the host's apt mirror)
#   FARM_OFFLINE=1  do not try `docker pull` for the base image
#   FARM_WHEELS=1   pre-build Python wheels on the host into docker/wheels (for builds whose
#                   containers cannot reach PyPI); auto-enabled when the probe finds no PyPI
#   ONLY=render-node|orchestrator   build just one image
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/docker/.cache"
BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
IMAGE_PREFIX="${IMAGE_PREFIX:-blender-farm}"
IMAGE_TAG="${IMAGE_TAG:-latest}"
SUITE=bookworm
ROOTFS_TAR="$CACHE/$SUITE-minbase-rootfs.tar"

log() { printf '[build-images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed)"

# The first Debian mirror the host's apt uses for the main archive (not -security),
# from one-line sources.list or deb822 .sources files.
host_debian_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            /^[[:space:]]*#/ { next }
            /^deb[[:space:]]/ {
                for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { url = $i; break }
                if (url !~ /security/ && $0 ~ /[[:space:]]bookworm[[:space:]]/) { print url; exit }
                url = ""
            }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { if (uri != "" && uri !~ /security/ && $0 ~ /[[:space:]]bookworm([[:space:]]|$)/) { print uri; exit } }
            /^$/ { uri = "" }
        ' "$f"
    done | awk 'NR == 1' || true
}

host_security_mirror() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | awk '
            /^[[:space:]]*#/ { next }
            { for (i = 1; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*debian-security/) { print $i; exit } }
        ' || true
}

build_rootfs_tar() {
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    [ "$(id -u)" = 0 ] || die "debootstrap needs root (or pull $BASE_IMAGE from a registry)"
    local mirror security start
    mirror="${DEBIAN_MIRROR:-$(host_debian_mirror)}"
    mirror="${mirror:-http://deb.debian.org/debian}"
    security="$(host_security_mirror)"
    security="${security:-${mirror%/debian}/debian-security}"
    dir="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$dir"' EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror (log: $CACHE/debootstrap.log)"
    start=$SECONDS
    debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed, see $CACHE/debootstrap.log"
    # Shape it like the official slim image: no docs/man/locales on install, apt keeps no
    # caches, and apt sources point at the same mirrors the host uses.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
EOF
    echo 'APT::Install-Recommends "false";' >"$dir/etc/apt/apt.conf.d/docker-no-recommends"
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
        "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
        "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log "$dir"/var/log/apt/* "$dir"/tmp/*
    : >"$dir/etc/machine-id"
    tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$dir"
    log "rootfs ready in $((SECONDS - start)) s: $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

ensure_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present"
        return
    fi
    if [ "${FARM_OFFLINE:-0}" != 1 ]; then
        log "pulling $BASE_IMAGE"
        if timeout 120 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
            return
        fi
        log "cannot pull $BASE_IMAGE: building it locally with debootstrap"
    fi
    case "$BASE_IMAGE" in
        debian:bookworm*) ;;
        *) die "$BASE_IMAGE cannot be pulled and only debian:bookworm* can be built locally" ;;
    esac
    mkdir -p "$CACHE"
    [ -s "$ROOTFS_TAR" ] || build_rootfs_tar
    log "docker import $ROOTFS_TAR as $BASE_IMAGE"
    docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
        "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
}

# Wheels for the image's Python (cp311 on bookworm), downloaded by the host's pip, which is
# the one that can reach PyPI when build containers cannot (e.g. behind a TLS-intercepting
# proxy whose CA only the host trusts). Skipped when pyproject.toml is unchanged.
prepare_wheels() {
    local wheels="$ROOT/docker/wheels" stamp want
    stamp="$wheels/.stamp"
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
        log "wheels up to date in docker/wheels"
        return
    fi
    python3 -m pip --version >/dev/null 2>&1 || die "FARM_WHEELS=1 needs pip on the host"
    rm -f "$wheels"/*.whl "$stamp"
    python3 - "$ROOT/pyproject.toml" >"$CACHE/requirements.txt" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
print("\n".join([*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]))
PY
    log "pip download wheels for cp311/manylinux into docker/wheels"
    python3 -m pip download -q -d "$wheels" --only-binary=:all: \
        --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
        --platform manylinux_2_36_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform linux_x86_64 --platform any \
        -r "$CACHE/requirements.txt" >"$CACHE/pip-download.log" 2>&1 \
        || die "pip download failed, see $CACHE/pip-download.log"
    echo "$want" >"$stamp"
}

# The bpy wheel (Blender 5.0 as a module, ~375 MB) and its dependencies, for the render-node
# image's `engine` stage, into docker/bpy-wheels: apart from docker/wheels, so that the
# other build stages (and the orchestrator image) never copy it. Skipped when the bpy
# requirement is unchanged.
prepare_bpy_wheels() {
    local wheels="$ROOT/docker/bpy-wheels" stamp want
    stamp="$wheels/.stamp"
    python3 - "$ROOT/pyproject.toml" >"$CACHE/requirements-bpy.txt" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["bpy"]))
PY
    want="$(sha256sum "$CACHE/requirements-bpy.txt" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$wheels"/bpy-*.whl >/dev/null 2>&1; then
        log "bpy wheels up to date in docker/bpy-wheels"
        return
    fi
    rm -f "$wheels"/*.whl "$stamp"
    log "pip download bpy and its dependencies for cp311/manylinux into docker/bpy-wheels"
    python3 -m pip download -q -d "$wheels" --only-binary=:all: \
        --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
        --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform linux_x86_64 --platform any \
        -r "$CACHE/requirements-bpy.txt" >"$CACHE/pip-download-bpy.log" 2>&1 \
        || die "pip download of bpy failed, see $CACHE/pip-download-bpy.log"
    echo "$want" >"$stamp"
}

build_image() {
    local name="$1" start=$SECONDS image="$IMAGE_PREFIX/$1:$IMAGE_TAG" before after
    before="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
    log "building $image (log: $CACHE/build-$name.log)"
    docker build -f "$ROOT/docker/$name.Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        -t "$image" "$ROOT" >"$CACHE/build-$name.log" 2>&1 \
        || { tail -n 30 "$CACHE/build-$name.log" >&2; die "building $name failed"; }
    after="$(docker image inspect -f '{{.Id}}' "$image")"
    # The image this tag replaced would linger as <none>; drop it unless a container uses it.
    if [ -n "$before" ] && [ "$before" != "$after" ]; then
        docker rmi "$before" >/dev/null 2>&1 || true
    fi
    log "built $image in $((SECONDS - start)) s"
}

mkdir -p "$CACHE"
total=$SECONDS
ensure_base_image
if [ "${BASE_ONLY:-0}" = 1 ]; then exit 0; fi

# The classic builder needs no buildx plugin (absent here); BuildKit users can override.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

case "${FARM_WHEELS:-auto}" in
    1) prepare_wheels; prepare_bpy_wheels ;;
    0) ;;
    *)  # auto: use host wheels when the host has pip (works with or without PyPI in builds)
        if python3 -m pip --version >/dev/null 2>&1; then prepare_wheels; prepare_bpy_wheels; fi ;;
esac

# Both at once: most of a fresh build is apt downloading and unpacking Blender and ffmpeg,
# which leaves the CPU idle while it waits on the network.
pids=()
for name in render-node orchestrator; do
    if [ -z "${ONLY:-}" ] || [ "$ONLY" = "$name" ]; then
        build_image "$name" &
        pids+=("$!")
    fi
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" = 0 ] || die "an image did not build (logs in $CACHE)"
log "done in $((SECONDS - total)) s"
