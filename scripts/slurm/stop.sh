#!/usr/bin/env bash
# Stop what scripts/slurm/start.sh started, the namespace nodes of --nodes included (their
# namespaces, links and bridge go too; the next start.sh makes them again).
set -uo pipefail
[[ $(id -u) -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
log() { printf '[slurm-stop] %s\n' "$*" >&2; }
# shellcheck source=nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/nodes.sh"
for d in slurmd slurmctld slurmdbd; do pkill -x "$d"; done
[[ -f /run/sshd-jobforge.pid ]] && kill "$(cat /run/sshd-jobforge.pid)" 2>/dev/null
mysqladmin shutdown 2>/dev/null
pkill -x munged
sleep 1
ns_teardown_beyond 0
log "stopped"
