#!/usr/bin/env bash
# Build the base image every Dockerfile here starts FROM ($BASE_IMAGE, jobforge/debian:bookworm)
# from Debian packages, for machines without an image registry: debootstrap --variant=minbase
# bookworm into a temporary directory, then `docker import`. Idempotent: an existing image is
# kept (--force rebuilds it). Where a registry exists, skip this and build with
# --build-arg BASE=debian:bookworm instead.
#
#   docker/build-base.sh [--force]
#   JOBFORGE_DEBIAN_MIRROR=http://deb.debian.org/debian (default)
set -euo pipefail
LOG_PREFIX=build-base
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MIRROR=${JOBFORGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

force=0
[[ ${1:-} == --force ]] && force=1
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, dockerd)"
ensure_tools
ensure_daemon
if ((!force)) && "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "$BASE_IMAGE exists (--force rebuilds it)"
  exit 0
fi

root=$(mktemp -d /var/tmp/jobforge-rootfs.XXXXXX)
chmod 755 "$root"  # the image's / : mktemp made it 700, which locks out every user but root
trap 'rm -rf "$root"' EXIT
t0=$SECONDS
log "debootstrap --variant=minbase bookworm ($MIRROR)"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 ||
  { tail -n 30 "$root.log" >&2; die "debootstrap failed (log $root.log)"; }
rm -f "$root.log"
# Security updates too, as debian:bookworm has them; no recommends and no caches in images.
cat >"$root/etc/apt/sources.list" <<LIST
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
LIST
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  >"$root/etc/apt/apt.conf.d/90jobforge"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
log "$BASE_IMAGE built in $((SECONDS - t0))s ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
