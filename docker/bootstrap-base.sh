#!/usr/bin/env bash
# Build the offline base image sd-base:bookworm with debootstrap and `docker import`.
#
# Used when no registry is reachable (python:3.11-slim cannot be pulled): the
# image is made from Debian packages alone, so `docker build` on top of it needs
# no network. It already holds python3 (3.11), python3-venv, iptables, iproute2
# and procps. Reuses an existing image unless --force is given.
#
# Usage: docker/bootstrap-base.sh [--force] [IMAGE]
# Environment:
#   SD_BASE_SUITE   Debian suite to bootstrap (default: bookworm)
#   SD_BASE_MIRROR  Debian mirror (default: the host's apt mirror for that suite,
#                   else http://deb.debian.org/debian)
#   TMPDIR          where the temporary root filesystem is made (default: /var/tmp)
set -euo pipefail

SUITE=${SD_BASE_SUITE:-bookworm}
INCLUDE=python3,python3-venv,iptables,iproute2,ca-certificates,procps
LABEL=sd.project=gossip-registry

force=0
image=""
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "bootstrap-base: unknown option $arg" >&2; exit 2 ;;
        *) image=$arg ;;
    esac
done
image=${image:-sd-base:$SUITE}

log() { printf 'bootstrap-base: %s\n' "$*" >&2; }

# Print the first apt mirror of the host that serves $SUITE (deb822 and one-line formats).
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() { if (!done && uri != "" && (" " suites " ") ~ (" " suite " ")) { print uri; done = 1; exit } uri = ""; suites = "" }
            /^[[:space:]]*$/ { flush(); next }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            END { flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }'
    done
}

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    log "$image already exists; reusing it (pass --force to rebuild)"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "debootstrap missing; installing it with apt-get"
    if [ "$(id -u)" != 0 ]; then
        log "need root to install debootstrap and to run it"
        exit 1
    fi
    apt_log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends debootstrap; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        rm -f "$apt_log"
        log "cannot install debootstrap"
        exit 1
    fi
    rm -f "$apt_log"
fi

mirror=${SD_BASE_MIRROR:-$(host_mirror | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/sd-base-rootfs.XXXXXX")
cleanup() {
    # debootstrap mounts /proc and /sys inside the target; never delete through a mount.
    awk -v dir="$rootfs" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$rootfs"
    rm -f "$rootfs.log"
}
trap cleanup EXIT

start=$SECONDS
log "debootstrap --variant=minbase $SUITE from $mirror into $rootfs"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    log "debootstrap failed"
    exit 1
}
log "debootstrap done in $((SECONDS - start)) s"

# Slim the tree: package lists, caches, logs, docs (copyright files stay), man pages, locales.
(
    cd "$rootfs"
    rm -rf var/lib/apt/lists/* var/cache/apt/* var/cache/debconf/*-old var/lib/dpkg/*-old
    find var/log -type f -delete
    find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
    find usr/share/doc -mindepth 1 -type d -empty -delete
    rm -rf usr/share/man/* usr/share/info/* usr/share/lintian usr/share/linda
    find usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
)
# Keep later `apt-get install` in derived images just as slim (same rules as Debian's docker images).
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/sd-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat >"$rootfs/etc/apt/apt.conf.d/90sd-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF

log "importing $rootfs as $image"
tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "LABEL $LABEL" \
        --change "LABEL sd.base.suite=$SUITE" \
        --change "LABEL sd.base.mirror=$mirror" \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase --include=$INCLUDE $SUITE $mirror" \
        - "$image" >/dev/null

size=$(docker image inspect --format '{{.Size}}' "$image")
log "built $image ($((size / 1000000)) MB) in $((SECONDS - start)) s"
