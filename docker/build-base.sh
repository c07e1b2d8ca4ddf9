#!/usr/bin/env bash
# Build the base image every Dockerfile here starts FROM ($BASE_IMAGE, jobforge/debian:bookworm)
# from Debian packages, for machines without an image registry: debootstrap --variant=minbase
# bookworm into a temporary directory, then `docker import`. Idempotent: an existing image is
# kept (--force rebuilds it). Where a registry exists, skip this and build with
# --build-arg BASE=debian:bookworm instead.
#
#   docker/build-base.sh [--force]
#   docker/build-base.sh --rootfs DIR   # only the root file system, into DIR (no Docker):
#                                       # scripts/containers/build-images.sh's images
#   JOBFORGE_DEBIAN_MIRROR=http://deb.debian.org/debian (default)
set -euo pipefail
LOG_PREFIX=build-base
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MIRROR=${JOBFORGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

force=0 rootfs_only=
case ${1:-} in
  --force) force=1 ;;
  --rootfs) rootfs_only=${2:?--rootfs needs a directory} ;;
esac
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, dockerd)"
if [[ -n $rootfs_only ]]; then
  source "$REPO/scripts/packages.sh"
  ensure_packages debootstrap
else
  ensure_tools
  ensure_daemon
  if ((!force)) && "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE exists (--force rebuilds it)"
    exit 0
  fi
fi

if [[ -n $rootfs_only ]]; then
  root=$rootfs_only
  rm -rf "$root" && mkdir -p "$root"
else
  root=$(mktemp -d /var/tmp/jobforge-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
fi
chmod 755 "$root"  # the image's / : mktemp made it 700, which locks out every user but root
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
if [[ -n $rootfs_only ]]; then
  log "root file system in $root in $((SECONDS - t0))s"
  exit 0
fi
tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
log "$BASE_IMAGE built in $((SECONDS - t0))s ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
