#!/usr/bin/env bash
# Stop what scripts/slurm/start.sh started.
set -uo pipefail
[[ $(id -u) -eq 0 ]] || { echo "must run as root" >&2; exit 1; }
for d in slurmd slurmctld slurmdbd; do pkill -x "$d"; done
[[ -f /run/sshd-jobforge.pid ]] && kill "$(cat /run/sshd-jobforge.pid)" 2>/dev/null
mysqladmin shutdown 2>/dev/null
pkill -x munged
sleep 1
echo "[slurm-stop] stopped" >&2
