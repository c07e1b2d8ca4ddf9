#!/usr/bin/env bash
# Start a real local Airflow deployment on this (Debian, root, no systemd) machine:
# PostgreSQL from Debian packages, then api-server (127.0.0.1:8080), scheduler (LocalExecutor),
# dag-processor and triggerer as separate processes, each in its own session with its own log
# and pid file under $STATE_DIR. Idempotent: what is running and configured alike is left alone;
# a component whose pid file is stale is cleaned up (its orphaned workers, its log server) and
# started again; a component whose configuration changed is restarted.
#
#   scripts/airflow/start.sh                      # everything; waits for the DAG files present
#   scripts/airflow/start.sh --only triggerer     # one component (repeatable)
#   scripts/airflow/start.sh --wait-dag my_dag    # also wait until dag id my_dag is visible
#   scripts/airflow/start.sh --wait-dags 3        # ... until at least 3 DAGs are visible
#   scripts/airflow/start.sh --no-wait-dags       # do not wait for DAG parsing
#   scripts/airflow/start.sh --timeout 300        # readiness timeout (default 180 s)
#
# Overrides (environment): JOBFORGE_AIRFLOW_DB_HOST (an external PostgreSQL with role and
# database airflow/airflow; default: the local one, installed and started here),
# JOBFORGE_AIRFLOW_STATE (/var/lib/jobforge-airflow),
# JOBFORGE_AIRFLOW_HOME ($STATE/home), JOBFORGE_AIRFLOW_DAGS_FOLDER ($HOME/dags),
# JOBFORGE_AIRFLOW_BIN (the repo's .venv/bin/airflow), JOBFORGE_AIRFLOW_PORT (8080),
# JOBFORGE_AIRFLOW_BIND (the api-server's listen address, 127.0.0.1).
# Extra Airflow settings: put AIRFLOW__SECTION__KEY=value lines into $STATE/extra.env.
#
# The configuration is AIRFLOW__* variables only (airflow.cfg stays an empty placeholder), written
# to $STATE/env (source it with `set -a`); tests and the components read the same file.
set -euo pipefail
LOG_PREFIX=airflow-start
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
started=$(date +%s.%N)

ONLY=()
WAIT_DAGS=(--dags-folder)
TIMEOUT=180
while (($#)); do
  case $1 in
    --only) is_component "${2:-}" || die "--only takes one of: ${COMPONENTS[*]}"; ONLY+=("$2"); shift 2 ;;
    --wait-dag) WAIT_DAGS+=(--dag "${2:?--wait-dag needs a dag id}"); shift 2 ;;
    --wait-dags) WAIT_DAGS+=(--min-dags "${2:?--wait-dags needs a number}"); shift 2 ;;
    --no-wait-dags) WAIT_DAGS=(); shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
((${#ONLY[@]})) || ONLY=("${COMPONENTS[@]}")
# By default: wait until every DAG file in the folder is parsed (in the DAG list or the import
# errors).
[[ ${WAIT_DAGS[0]:-} == --dags-folder ]] && WAIT_DAGS[0]="--dags-folder=$DAGS_DIR"

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
take_lock
[[ -x $AIRFLOW_BIN ]] || die "no airflow at $AIRFLOW_BIN (pip install -e '.[test,postgres]' into .venv, or set JOBFORGE_AIRFLOW_BIN)"
PYTHON=$(dirname "$AIRFLOW_BIN")/python
[[ -x $PYTHON ]] || PYTHON=python3

# --- PostgreSQL ----------------------------------------------------------------------------
if [[ $DB_HOST == 127.0.0.1 ]]; then
  ensure_postgres
else
  log "waiting for the external PostgreSQL on $DB_HOST"
  for _ in $(seq 600); do pg_isready -q -h "$DB_HOST" && break; sleep 0.5; done
  pg_isready -q -h "$DB_HOST" || die "postgresql does not answer on $DB_HOST"
fi

# --- configuration -------------------------------------------------------------------------
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$AIRFLOW_HOME_DIR" "$DAGS_DIR"
chmod 755 "$STATE_DIR"
# An existing (empty) airflow.cfg stops Airflow from writing its default one with generated
# secrets that would shadow nothing but confuse a reader: the configuration is the env file.
[[ -f $AIRFLOW_HOME_DIR/airflow.cfg ]] ||
  echo "# Empty on purpose: scripts/airflow/start.sh configures Airflow through $ENV_FILE" \
    >"$AIRFLOW_HOME_DIR/airflow.cfg"
SECRETS=$STATE_DIR/secrets
if [[ ! -s $SECRETS ]]; then
  "$PYTHON" - >"$SECRETS.tmp" <<'PY'
import base64, secrets
print("JWT_SECRET=" + secrets.token_urlsafe(64))  # HS512 wants >= 64 bytes
print("SECRET_KEY=" + secrets.token_urlsafe(32))
print("FERNET_KEY=" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
PY
  chmod 600 "$SECRETS.tmp"
  mv "$SECRETS.tmp" "$SECRETS"
fi
secret() { sed -n "s/^$1=//p" "$SECRETS"; }

new_env=$(cat <<ENV
# Written by airflow-jobforge scripts/airflow/start.sh; source with: set -a; . $ENV_FILE; set +a
AIRFLOW_HOME=$AIRFLOW_HOME_DIR
AIRFLOW_CONFIG=$AIRFLOW_HOME_DIR/airflow.cfg
AIRFLOW__CORE__DAGS_FOLDER=$DAGS_DIR
AIRFLOW__CORE__EXECUTOR=LocalExecutor
AIRFLOW__CORE__PARALLELISM=16
AIRFLOW__CORE__LOAD_EXAMPLES=False
AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$STATE_DIR/simple_auth_manager_passwords.json
AIRFLOW__CORE__FERNET_KEY=$(secret FERNET_KEY)
AIRFLOW__CORE__EXECUTION_API_SERVER_URL=$API_URL/execution/
AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL=5
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:airflow@$DB_HOST:5432/airflow
AIRFLOW__API__HOST=$API_BIND
AIRFLOW__API__PORT=$API_PORT
AIRFLOW__API__WORKERS=1
AIRFLOW__API__SECRET_KEY=$(secret SECRET_KEY)
AIRFLOW__API_AUTH__JWT_SECRET=$(secret JWT_SECRET)
AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=30
AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=2
AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC=5
AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=60
AIRFLOW__LOGGING__BASE_LOG_FOLDER=$AIRFLOW_HOME_DIR/logs
JOBFORGE_AIRFLOW_URL=$API_URL
JOBFORGE_AIRFLOW_STATE=$STATE_DIR
JOBFORGE_AIRFLOW_DAGS_FOLDER=$DAGS_DIR
JOBFORGE_AIRFLOW_LOG_DIR=$LOG_DIR
JOBFORGE_AIRFLOW_BIN=$AIRFLOW_BIN
ENV
)
if [[ -f $STATE_DIR/extra.env ]]; then
  new_env+=$'\n# from '"$STATE_DIR/extra.env"$'\n'$(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$STATE_DIR/extra.env" || true)
fi
if [[ ! -f $ENV_FILE ]] || [[ "$(cat "$ENV_FILE")" != "$new_env" ]]; then
  printf '%s\n' "$new_env" >"$ENV_FILE.tmp"
  chmod 600 "$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
fi
mapfile -t ENV_LINES < <(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$ENV_FILE")
# The components run in a clean environment: a caller's AIRFLOW_HOME or AIRFLOW__* (pytest's
# conftest sets some) must not leak into the deployment.
BASE_ENV=(HOME=/root LANG=C.UTF-8
  "PATH=$(dirname "$AIRFLOW_BIN"):/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  "${ENV_LINES[@]}")
# What a running component was started with: when it differs, the component is restarted.
# jobforge's own code counts: the scheduler and the triggerer keep it imported (the
# scheduler preloads it for its task processes: airflow_jobforge/plugins/preload.py).
JOBFORGE_DIR=$("$PYTHON" -c 'import airflow_jobforge, os; print(os.path.dirname(airflow_jobforge.__file__))' 2>/dev/null || true)
code_id() {
  [[ -n $JOBFORGE_DIR ]] || return 0
  find "$JOBFORGE_DIR" -type f \( -name '*.py' -o -name '*.html' \) -print0 | sort -z |
    xargs -0 cat | sha256sum
}
CONFIG_ID=$( (cat "$ENV_FILE"; echo "$AIRFLOW_BIN"; code_id) | sha256sum | cut -c1-16)

# --- metadata database ---------------------------------------------------------------------
# `airflow db migrate` is idempotent but costs a CLI start (~3 s): skip it when the database
# is at the revision the last migrate of this same Airflow left it at.
AIRFLOW_VERSION=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("apache-airflow-core"))' 2>/dev/null || echo unknown)
db_rev=$(PGPASSWORD=airflow psql -X -h "$DB_HOST" -U airflow -d airflow -tA \
  -c "SELECT version_num FROM alembic_version" 2>/dev/null || true)
STAMP=$STATE_DIR/migrated
if [[ -z $db_rev || ! -f $STAMP || "$(cat "$STAMP")" != "$AIRFLOW_VERSION $db_rev" ]]; then
  log "airflow db migrate (airflow $AIRFLOW_VERSION)"
  t0=$SECONDS
  if ! env -i "${BASE_ENV[@]}" "$AIRFLOW_BIN" db migrate >"$LOG_DIR/db-migrate.log" 2>&1; then
    tail -n 40 "$LOG_DIR/db-migrate.log" >&2
    die "airflow db migrate failed (log: $LOG_DIR/db-migrate.log)"
  fi
  db_rev=$(PGPASSWORD=airflow psql -X -h "$DB_HOST" -U airflow -d airflow -tA -c "SELECT version_num FROM alembic_version")
  echo "$AIRFLOW_VERSION $db_rev" >"$STAMP"
  log "migrated to $db_rev in $((SECONDS - t0))s"
fi

# --- components ----------------------------------------------------------------------------
command_of() {
  case $1 in
    api-server) echo "api-server --host $API_BIND --port $API_PORT" ;;
    *) echo "$1" ;;
  esac
}

port_holder() { ss -ltnpH "sport = :$1" 2>/dev/null | head -1; }

launch() {  # launch NAME
  local name=$1 logf pid
  logf=$(log_file "$name")
  if [[ $name == api-server && -n $(port_holder "$API_PORT") ]]; then
    die "port $API_PORT is taken by something this script did not start: $(port_holder "$API_PORT")"
  fi
  printf '\n===== %s start.sh: starting %s\n' "$(date -Is)" "$name" >>"$logf"
  LAUNCHED+=(--started "$name=$(date +%s.%N)")
  # A background job of a non-interactive shell is no process-group leader, so setsid makes
  # the session in place (no fork) and $! is the component's own pid: its session id.
  # shellcheck disable=SC2046
  (cd "$AIRFLOW_HOME_DIR" && exec env -i "${BASE_ENV[@]}" JOBFORGE_AIRFLOW_COMPONENT="$name" \
    setsid "$AIRFLOW_BIN" $(command_of "$name")) >>"$logf" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  echo "$CONFIG_ID" >"$RUN_DIR/$name.config"
  log "started $name (pid $pid, log $logf)"
}

STARTED=()
LAUNCHED=()
stoppers=()
for name in "${ONLY[@]}"; do
  if component_alive "$name"; then
    if [[ "$(cat "$RUN_DIR/$name.config" 2>/dev/null)" == "$CONFIG_ID" ]]; then
      stop_strays "$name" TERM 5
      continue
    fi
    log "$name: configuration changed: restarting"
    stop_component "$name" TERM 0 &
  else
    # A stale pid file: the component died (or was killed alone); its session may still hold
    # workers (LocalExecutor workers ignore SIGTERM) and a log server's port. They go, as
    # systemd's KillMode=control-group would take them with a crashed unit.
    stop_component "$name" TERM 0 2 &
  fi
  stoppers+=($!)
  STARTED+=("$name")
done
for p in "${stoppers[@]}"; do wait "$p" || die "could not stop what is left of ${STARTED[*]}"; done
for name in "${STARTED[@]}"; do launch "$name"; done

# --- readiness -----------------------------------------------------------------------------
probe_args=(--url "$API_URL" --timeout "$TIMEOUT" --run-dir "$RUN_DIR" --token-file "$STATE_DIR/token")
for name in "${ONLY[@]}"; do probe_args+=(--component "$name"); done
probe_args+=("${LAUNCHED[@]}")
if ! out=$("$PYTHON" "$REPO/scripts/airflow/probe.py" "${probe_args[@]}" "${WAIT_DAGS[@]}"); then
  failed=$(sed -n 's/^component=//p' <<<"$out" | tail -1)
  for name in ${failed:-${ONLY[*]}}; do
    log "last lines of $(log_file "$name"):"
    tail -n 40 "$(log_file "$name")" | sed "s/^/[$name] /" >&2
  done
  die "deployment not ready (component: ${failed:-unknown}; logs in $LOG_DIR)"
fi

elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
if ((${#STARTED[@]})); then what="started ${STARTED[*]}"; else what="all running already"; fi
log "Airflow $AIRFLOW_VERSION ready at $API_URL ($what) in ${elapsed}s"
cat >&2 <<USAGE
[airflow-start] token: curl -s $API_URL/auth/token   (all-admins: no credentials; or $STATE_DIR/token)
[airflow-start] api:   curl -s -H "Authorization: Bearer \$(cat $STATE_DIR/token)" $API_URL/api/v2/dags
[airflow-start] ui:    $API_URL/   (all admins: no login)
[airflow-start] dags:  $DAGS_DIR   env: $ENV_FILE   logs: $LOG_DIR
[airflow-start] stop:  scripts/airflow/stop.sh   (--all: PostgreSQL too; --only NAME [--signal KILL] [--leader-only]: one component)
USAGE
