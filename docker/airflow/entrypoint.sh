#!/usr/bin/env bash
# The Airflow image's entrypoint: the repository's scripts/airflow/start.sh, as on a host
# (the four components as processes of this container, readiness wait included; the metadata
# database is the `postgres` service: JOBFORGE_AIRFLOW_DB_HOST), with the api-server bound to
# 0.0.0.0 for the published port. Then it follows the
# components' logs, and the container ends when one of them dies.
#
# The SSH connection `hpc_login` (dags/jobforge_over_ssh.py and the stack's own DAG use it)
# points at the login container: the key the login node made in the shared volume, the host
# key ssh-keyscan reads from it now.
set -euo pipefail
SHARED=${JOBFORGE_SHARED:-/jobforge/etc}
STATE=${JOBFORGE_AIRFLOW_STATE:-/var/lib/jobforge-airflow}
LOGIN=${JOBFORGE_LOGIN_HOST:-login}
log() { printf '[airflow] %s\n' "$*" >&2; }

deadline=$((SECONDS + 300))
until [[ -s $SHARED/ssh/id_ed25519 ]] &&
  host_key=$(ssh-keyscan -t ed25519 "$LOGIN" 2>/dev/null | awk '$2 == "ssh-ed25519" {print $2 " " $3; exit}') &&
  [[ -n $host_key ]]; do
  ((SECONDS < deadline)) || { log "ERROR: no ssh key in $SHARED/ssh or no sshd on $LOGIN"; exit 1; }
  sleep 1
done
mkdir -p "$STATE"
# start.sh adds these lines to the deployment's env file (one line each, no quoting).
conn=$(python3 -c 'import json, sys; print(json.dumps({"conn_type": "ssh", "host": sys.argv[1], "port": 22, "login": "jobforge", "extra": {"key_file": sys.argv[2], "host_key": sys.argv[3]}}))' \
  "$LOGIN" "$SHARED/ssh/id_ed25519" "$host_key")
printf 'AIRFLOW_CONN_HPC_LOGIN=%s\n' "$conn" >"$STATE/extra.env"

export JOBFORGE_AIRFLOW_BIN=/opt/venv/bin/airflow
export JOBFORGE_AIRFLOW_DAGS_FOLDER=/opt/jobforge/dags
export JOBFORGE_AIRFLOW_BIND=0.0.0.0
/opt/jobforge/scripts/airflow/start.sh --timeout "${JOBFORGE_AIRFLOW_TIMEOUT:-300}" "$@"
touch "$STATE/ready"
log "ready"
# shellcheck source=../../scripts/airflow/common.sh
LOG_PREFIX=airflow source /opt/jobforge/scripts/airflow/common.sh
tail -n 0 -F "$LOG_DIR"/*.log &
while sleep 5; do
  for c in "${COMPONENTS[@]}"; do
    component_alive "$c" || { log "ERROR: $c died"; exit 1; }
  done
done
