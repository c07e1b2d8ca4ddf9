#!/usr/bin/env bash
# The stack's PostgreSQL (the `postgres` service, Airflow image): the cluster, role and
# database come from the same `ensure_postgres` that scripts/airflow/start.sh uses on a host;
# here it also listens on the compose network for the `airflow` service. The container ends
# when PostgreSQL stops answering.
set -euo pipefail
LOG_PREFIX=postgres
# shellcheck source=../../scripts/airflow/common.sh
source /opt/jobforge/scripts/airflow/common.sh
pg=$(pg_version)
conf=/etc/postgresql/$pg/main
sed -i "s/^#\{0,1\}listen_addresses = .*/listen_addresses = '*'/" "$conf/postgresql.conf"
grep -q 'jobforge-stack' "$conf/pg_hba.conf" ||
  echo "host airflow airflow all scram-sha-256  # jobforge-stack: the airflow service" >>"$conf/pg_hba.conf"
ensure_postgres
log "ready on port 5432"
tail -n 0 -F "/var/log/postgresql/postgresql-$pg-main.log" &
while sleep 5; do
  pg_isready -q -h 127.0.0.1 || { log "ERROR: postgresql stopped answering"; exit 1; }
done
