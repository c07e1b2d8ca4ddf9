# Shared by the scripts in docker/ (sourced, never run): paths, logging, and a Docker daemon
# that answers. This machine kind has no image registry and no systemd: Debian's docker.io
# is installed with apt and dockerd started by hand with the vfs storage driver (overlayfs is
# unavailable here), without iptables and without the default bridge; containers talk on the
# compose project's user-defined network, whose embedded DNS resolves service names.
DOCKER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$DOCKER_DIR/.." && pwd)
# Debian's client: the one in /usr/local/bin (if any) may be newer than Debian's daemon.
DOCKER=${JOBFORGE_DOCKER:-/usr/bin/docker}
COMPOSE=${JOBFORGE_COMPOSE:-/usr/bin/docker-compose}
DOCKERD_LOG=${JOBFORGE_DOCKERD_LOG:-/var/log/jobforge-dockerd.log}
BASE_IMAGE=${JOBFORGE_BASE_IMAGE:-jobforge/debian:bookworm}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-jobforge}

log() { printf '[%s] %s\n' "${LOG_PREFIX:-docker}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ensure_tools: docker.io, docker-compose (Debian's 1.29) and debootstrap, installed with apt.
ensure_tools() {
  # shellcheck source=../scripts/packages.sh
  source "$REPO/scripts/packages.sh"
  ensure_packages docker.io docker-compose debootstrap
}

# ensure_daemon: start dockerd unless one answers already (idempotent).
ensure_daemon() {
  "$DOCKER" info >/dev/null 2>&1 && return 0
  [[ $(id -u) -eq 0 ]] || die "no Docker daemon answers and only root can start one"
  log "starting dockerd (vfs, no iptables, no bridge; log $DOCKERD_LOG)"
  (setsid dockerd --storage-driver=vfs --iptables=false --bridge=none \
    >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &)
  local deadline=$((SECONDS + 60))
  until "$DOCKER" info >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd did not answer within 60 s"; }
    sleep 0.5
  done
}

# stage_ca_certs: the extra CAs this machine trusts (/usr/local/share/ca-certificates, e.g. an
# egress proxy's) into the Airflow image's build context, so that pip in `docker build`
# trusts what pip here trusts. Nothing to copy on a machine without any.
stage_ca_certs() {
  local dir=$DOCKER_DIR/ca-certificates
  find "$dir" -maxdepth 1 -name '*.crt' -delete
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$dir/" \; 2>/dev/null || true
}
