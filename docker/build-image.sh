#!/usr/bin/env bash
# Build the node image (default tag sd-node:latest) from the repository root.
#
# Steps, each skipped when already done:
#   1. base: python:3.11-slim if present or pullable within SD_PULL_TIMEOUT seconds,
#      else sd-base:bookworm (made once by docker/bootstrap-base.sh, no registry needed);
#   2. wheelhouse: docker/wheels/ for the engine's architecture and the base's Python,
#      refreshed only when requirements.txt or the platform changes;
#   3. docker build -f docker/Dockerfile with BASE=<base>; a change under node/ only
#      rebuilds the last layer.
#
# Usage: docker/build-image.sh [TAG]
# Environment:
#   SD_BASE          use this base image and skip the choice (e.g. sd-base:bookworm)
#   SD_PULL_TIMEOUT  seconds allowed for `docker pull python:3.11-slim` (default 20)
#   PYTHON           host interpreter whose pip fills the wheelhouse (default python3)
set -euo pipefail

case "${1:-}" in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

TAG=${1:-sd-node:latest}
SLIM=python:3.11-slim
OFFLINE_BASE=sd-base:bookworm
PULL_TIMEOUT=${SD_PULL_TIMEOUT:-20}
PYTHON=${PYTHON:-python3}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
WHEELS=$HERE/wheels
STAMP=$WHEELS/.stamp

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is dockerd running?)"
t_all=$SECONDS

# --- 1. base image ------------------------------------------------------------
choose_base() {
    if [ -n "${SD_BASE:-}" ]; then
        log "base: $SD_BASE (from SD_BASE)"
        BASE=$SD_BASE
    elif docker image inspect "$SLIM" >/dev/null 2>&1; then
        log "base: $SLIM (present locally)"
        BASE=$SLIM
    elif log "trying docker pull $SLIM (timeout ${PULL_TIMEOUT}s)" &&
        timeout "$PULL_TIMEOUT" docker pull -q "$SLIM" >/dev/null 2>&1; then
        log "base: $SLIM (pulled)"
        BASE=$SLIM
    else
        log "base: $OFFLINE_BASE ($SLIM unavailable)"
        BASE=$OFFLINE_BASE
    fi
    if [ "$BASE" = "$OFFLINE_BASE" ]; then
        "$HERE/bootstrap-base.sh" "$OFFLINE_BASE"
    fi
    docker image inspect "$BASE" >/dev/null 2>&1 || die "base image $BASE not found"
}

# --- 2. wheelhouse ------------------------------------------------------------
fill_wheelhouse() {
    local arch machine pyver stamp
    arch=$(docker info --format '{{.Architecture}}')
    case "$arch" in
        x86_64 | amd64) machine=x86_64 ;;
        aarch64 | arm64) machine=aarch64 ;;
        *) die "no wheel platform known for engine architecture $arch" ;;
    esac
    pyver=$(docker run --rm --network none --entrypoint python3 "$BASE" \
        -c 'import sys; print("%d%d" % sys.version_info[:2])') || die "cannot run python3 in $BASE"
    stamp="$(sha256sum <"$ROOT/requirements.txt" | cut -d' ' -f1) manylinux2014_$machine cp$pyver"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp" ]; then
        log "wheelhouse: up to date ($(find "$WHEELS" -name '*.whl' | wc -l) wheels for $machine, cp$pyver)"
        return
    fi
    log "wheelhouse: downloading requirements.txt for manylinux2014_$machine, cp$pyver"
    local t=$SECONDS tmp="$HERE/.build/wheels.new"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --dest "$tmp" \
        --only-binary=:all: --platform "manylinux2014_$machine" --implementation cp \
        --python-version "${pyver:0:1}.${pyver:1}" --abi "cp$pyver" \
        -r "$ROOT/requirements.txt"
    rm -rf "$WHEELS"
    mv "$tmp" "$WHEELS"
    rmdir "$HERE/.build" 2>/dev/null || true
    printf '%s\n' "$stamp" >"$STAMP"
    log "wheelhouse: $(find "$WHEELS" -name '*.whl' | wc -l) wheels in $((SECONDS - t)) s"
}

# --- 3. image -----------------------------------------------------------------
build_image() {
    local old new t=$SECONDS
    old=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
    log "docker build -t $TAG (BASE=$BASE)"
    # The labels (sd.project, sd.base) are set in the Dockerfile: `--label` would add
    # build steps after the last COPY and slow down every rebuild after a code change.
    docker build --file "$HERE/Dockerfile" --build-arg "BASE=$BASE" --tag "$TAG" "$ROOT"
    new=$(docker image inspect --format '{{.Id}}' "$TAG")
    # The image this tag pointed to is now untagged; drop it unless a container still uses it.
    if [ -n "$old" ] && [ "$old" != "$new" ] &&
        [ -z "$(docker image inspect --format '{{join .RepoTags ""}}' "$old" 2>/dev/null)" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true
    fi
    log "built $TAG ($(($(docker image inspect --format '{{.Size}}' "$TAG") / 1000000)) MB) in $((SECONDS - t)) s"
}

choose_base
fill_wheelhouse
build_image
log "done in $((SECONDS - t_all)) s"
