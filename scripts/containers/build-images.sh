#!/usr/bin/env bash
# The container runtimes and test images of the container tests, from Debian packages only
# (no image registry is reachable): podman, charliecloud (ch-run) and catatonit (podman's
# --init), then one small root file system (debootstrap minbase bookworm, via
# docker/build-base.sh --rootfs) whose /etc/os-release says "jobforge-test", used as
#   - the podman image localhost/jobforge-test:1 (podman import), and
#   - the charliecloud image directory $STATE_DIR/ch/jobforge-test (a copy).
# Idempotent: what exists is kept (--force rebuilds). Writes $STATE_DIR/env for the tests.
#
# This machine's sandbox forbids raising RLIMIT_NPROC to podman's root default (4194304:
# "error setting rlimit type 6: operation not permitted"), so podman gets default ulimits
# below the hard limits here (containers.conf.d drop-in); a real node needs none of that.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE_DIR=${JOBFORGE_CONTAINERS_STATE:-/var/lib/jobforge-containers}
PODMAN_IMAGE=localhost/jobforge-test:1
CH_IMAGE=$STATE_DIR/ch/jobforge-test
log() { printf '[containers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (packages, podman storage)"
force=0
[[ ${1:-} == --force ]] && force=1
t0=$SECONDS
# shellcheck source=../packages.sh
source "$REPO/scripts/packages.sh"
ensure_packages podman charliecloud-runtime catatonit debootstrap
mkdir -p "$STATE_DIR" /etc/containers/containers.conf.d
ulimits="/etc/containers/containers.conf.d/50-jobforge-test.conf"
if [[ ! -e $ulimits ]]; then
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' \
    "$nofile" "$nofile" "$nproc" "$nproc" >"$ulimits"
fi

rootfs=$STATE_DIR/rootfs
if ((force)) || [[ ! -e $rootfs/etc/jobforge-test ]]; then
  "$REPO/docker/build-base.sh" --rootfs "$rootfs"
  rm -f "$rootfs/etc/os-release"  # a link to ../usr/lib/os-release: a file of its own instead
  cat >"$rootfs/etc/os-release" <<'OS'
PRETTY_NAME="jobforge test image (Debian 12 minbase)"
NAME="jobforge-test"
ID=jobforge-test
ID_LIKE=debian
VERSION_ID="1"
OS
  cp "$rootfs/etc/os-release" "$rootfs/usr/lib/os-release"
  touch "$rootfs/etc/jobforge-test"
  force=1
fi
if ((force)) || ! podman image exists "$PODMAN_IMAGE"; then
  podman rmi -f "$PODMAN_IMAGE" >/dev/null 2>&1 || true
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$PODMAN_IMAGE" >/dev/null
  log "podman image $PODMAN_IMAGE imported"
fi
if ((force)) || [[ ! -e $CH_IMAGE/etc/jobforge-test ]]; then
  rm -rf "$CH_IMAGE" && mkdir -p "$(dirname "$CH_IMAGE")"
  cp -a "$rootfs" "$CH_IMAGE"
  log "charliecloud image $CH_IMAGE made"
fi
cat >"$STATE_DIR/env" <<ENV
JOBFORGE_PODMAN_IMAGE=$PODMAN_IMAGE
JOBFORGE_CHARLIECLOUD_IMAGE=$CH_IMAGE
ENV
log "ready in $((SECONDS - t0))s: podman $PODMAN_IMAGE, charliecloud $CH_IMAGE ($STATE_DIR/env)"
