#!/usr/bin/env bash
# Start a real local Airflow deployment on this (Debian, root, no systemd) machine:
# PostgreSQL from Debian packages, then api-server (127.0.0.1:8080), scheduler (LocalExecutor),
# dag-processor and triggerer as separate processes, each in its own session with its own log
# and pid file under $STATE_DIR. Idempotent: what is running and configured alike is left alone;
# a component whose pid file is stale is cleaned up (its orphaned workers, its log server) and
# started again; a component whose configuration changed is restarted.
#
# The celery profile (--executor celery) runs the CeleryExecutor instead: Redis from Debian
# (redis-server on 127.0.0.1:6379, a component like the others: `redis`) as the broker, the same
# PostgreSQL as the result backend, two Celery workers (worker-1, worker-2: `airflow celery
# worker --celery-hostname worker-N@%h`), two schedulers (scheduler, scheduler-2) and two
# triggerers (triggerer, triggerer-2), plus api-server and dag-processor. It needs
# apache-airflow-providers-celery in the Airflow venv (pip install 'airflow-jobforge[celery]').
# Switching profiles restarts every component (the configuration changed) and stops those
# the new profile does not run.
#
#   scripts/airflow/start.sh                      # everything; waits for the DAG files present
#   scripts/airflow/start.sh --executor celery    # the celery profile (default: local)
#   scripts/airflow/start.sh --only triggerer     # one component (repeatable) of the profile
#                                                 # started last (unless --executor says)
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
# JOBFORGE_AIRFLOW_BIND (the api-server's listen address, 127.0.0.1),
# JOBFORGE_REDIS_PORT (6379, the celery profile's broker).
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
PROFILE=
while (($#)); do
  case $1 in
    --only) is_component "${2:-}" || die "--only takes one of: ${ALL_COMPONENTS[*]}"; ONLY+=("$2"); shift 2 ;;
    --executor)
      case ${2:-} in
        local | LocalExecutor) PROFILE=local ;;
        celery | CeleryExecutor) PROFILE=celery ;;
        *) die "--executor takes one of: ${PROFILES[*]}" ;;
      esac
      shift 2 ;;
    --wait-dag) WAIT_DAGS+=(--dag "${2:?--wait-dag needs a dag id}"); shift 2 ;;
    --wait-dags) WAIT_DAGS+=(--min-dags "${2:?--wait-dags needs a number}"); shift 2 ;;
    --no-wait-dags) WAIT_DAGS=(); shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
# Without --executor: the local profile, but --only restarts components of the profile that
# runs (a fault test restarting one triggerer must not switch the deployment's executor).
if [[ -z $PROFILE ]]; then
  if ((${#ONLY[@]})); then PROFILE=$(current_profile); else PROFILE=local; fi
fi
mapfile -t PROFILE_COMPONENTS < <(profile_components "$PROFILE")
for name in "${ONLY[@]}"; do
  is_component "$name" "${PROFILE_COMPONENTS[@]}" ||
    die "$name is no component of the $PROFILE profile (${PROFILE_COMPONENTS[*]})"
done
OTHERS=()  # what runs of another profile: a full start stops it
if ((${#ONLY[@]} == 0)); then
  ONLY=("${PROFILE_COMPONENTS[@]}")
  for name in "${ALL_COMPONENTS[@]}"; do
    is_component "$name" "${PROFILE_COMPONENTS[@]}" || OTHERS+=("$name")
  done
fi
# By default: wait until every DAG file in the folder is parsed (in the DAG list or the import
# errors).
[[ ${WAIT_DAGS[0]:-} == --dags-folder ]] && WAIT_DAGS[0]="--dags-folder=$DAGS_DIR"

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
take_lock
[[ -x $AIRFLOW_BIN ]] || die "no airflow at $AIRFLOW_BIN (pip install -e '.[test,postgres]' into .venv, or set JOBFORGE_AIRFLOW_BIN)"
PYTHON=$(dirname "$AIRFLOW_BIN")/python
[[ -x $PYTHON ]] || PYTHON=python3
if [[ $PROFILE == celery ]] && ! "$PYTHON" -c 'import airflow.providers.celery' 2>/dev/null; then
  die "the celery profile needs apache-airflow-providers-celery in $(dirname "$AIRFLOW_BIN")/.. (pip install -e '.[celery]')"
fi

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
AIRFLOW__CORE__EXECUTOR=$([[ $PROFILE == celery ]] && echo CeleryExecutor || echo LocalExecutor)
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
# The celery profile's settings (the local profile's env file stays as it always was).
# The result backend is the metadata database; each worker runs 8 tasks at once (16 in all,
# as the LocalExecutor's parallelism). A worker killed with a task it had received but not yet
# started (the API had not marked it running) leaves that task queued, its message unacked in
# Redis, until the scheduler's task_queued_timeout requeues it: 3 min here, checked every
# 30 s (Airflow's default: 10 min, checked every 2 min). Not shorter: tasks waiting for a free
# worker slot that long are requeued too. Each triggerer holds at most 25 triggers: a
# triggerer takes every unassigned trigger up to its capacity when it asks (seen: all 40 of
# a burst on one of the two), so a smaller capacity is what spreads the waits.
if [[ $PROFILE == celery ]]; then
  new_env+=$'\n'$(cat <<ENV
AIRFLOW__CELERY__BROKER_URL=redis://127.0.0.1:$REDIS_PORT/0
AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql://airflow:airflow@$DB_HOST:5432/airflow
AIRFLOW__CELERY__WORKER_CONCURRENCY=8
AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=180
AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL=30
AIRFLOW__TRIGGERER__CAPACITY=25
JOBFORGE_AIRFLOW_PROFILE=celery
ENV
)
fi
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
    # Gossip and mingle (worker-to-worker chatter) serve nothing Airflow uses.
    worker-*) echo "celery worker --celery-hostname $1@%h --without-gossip --without-mingle" ;;
    redis) echo "--port $REDIS_PORT --bind 127.0.0.1 --dir $STATE_DIR/redis" ;;
    *) role_of "$1" ;;
  esac
}

# Settings of one component of a role that runs twice on this host: its own log server port.
# (On separate machines the default ports do; the API server reads this host's logs from the
# shared log folder anyway.) Nothing for the local profile's components.
component_env() {
  case $1 in
    worker-1) echo AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8793 ;;
    worker-2) echo AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8795 ;;
    triggerer-2) echo AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=8796 ;;
  esac
}

# What a running component was started with: the deployment's, plus its own command and
# settings where it has any of its own.
config_id_of() {
  local extra
  extra=$(component_env "$1")
  if [[ $1 == redis ]]; then
    echo "redis $(command_of redis)" | sha256sum | cut -c1-16
  elif [[ -n $extra || $1 == worker-* ]]; then
    printf '%s\n%s\n%s\n' "$CONFIG_ID" "$(command_of "$1")" "$extra" | sha256sum | cut -c1-16
  else
    echo "$CONFIG_ID"
  fi
}

port_holder() { ss -ltnpH "sport = :$1" 2>/dev/null | head -1; }

launch() {  # launch NAME
  local name=$1 logf pid bin=$AIRFLOW_BIN own_env
  logf=$(log_file "$name")
  if [[ $name == api-server && -n $(port_holder "$API_PORT") ]]; then
    die "port $API_PORT is taken by something this script did not start: $(port_holder "$API_PORT")"
  fi
  if [[ $name == redis ]]; then
    [[ -z $(port_holder "$REDIS_PORT") ]] ||
      die "port $REDIS_PORT is taken by something this script did not start: $(port_holder "$REDIS_PORT")"
    bin=$(command -v redis-server)
    mkdir -p "$STATE_DIR/redis"
  fi
  mapfile -t own_env < <(component_env "$name")
  printf '\n===== %s start.sh: starting %s\n' "$(date -Is)" "$name" >>"$logf"
  LAUNCHED+=(--started "$name=$(date +%s.%N)")
  # A background job of a non-interactive shell is no process-group leader, so setsid makes
  # the session in place (no fork) and $! is the component's own pid: its session id.
  # shellcheck disable=SC2046
  (cd "$AIRFLOW_HOME_DIR" && exec env -i "${BASE_ENV[@]}" "${own_env[@]}" \
    JOBFORGE_AIRFLOW_COMPONENT="$name" setsid "$bin" $(command_of "$name")) \
    >>"$logf" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  config_id_of "$name" >"$RUN_DIR/$name.config"
  log "started $name (pid $pid, log $logf)"
}

# Redis from Debian, started by this script (not by the package's init script: Debian's
# postinst starts one where no systemd runs; it goes, so that 6379 is this deployment's).
ensure_redis_package() {
  # shellcheck source=../packages.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../packages.sh"
  ensure_packages redis-server
  local pidf=/run/redis/redis-server.pid
  if [[ -s $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    log "stopping the redis-server Debian's package started (we start our own)"
    kill "$(cat "$pidf")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$pidf" 2>/dev/null)" 2>/dev/null || break; sleep 0.2; done
  fi
}

redis_ready() { [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

STARTED=()
LAUNCHED=()
stoppers=()
# Components of the other profile go first (their ports, their executor).
for name in "${OTHERS[@]}"; do
  [[ -e $(pid_file "$name") ]] || continue
  log "$name: not in the $PROFILE profile: stopping"
  stop_component "$name" TERM 0 &
  stoppers+=($!)
done
for p in "${stoppers[@]}"; do wait "$p" || die "could not stop ${OTHERS[*]}"; done
stoppers=()
echo "$PROFILE" >"$PROFILE_FILE"
is_component redis "${ONLY[@]}" && ensure_redis_package
for name in "${ONLY[@]}"; do
  if component_alive "$name"; then
    if [[ "$(cat "$RUN_DIR/$name.config" 2>/dev/null)" == "$(config_id_of "$name")" ]]; then
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
# The broker first: a Celery worker or scheduler started without it retries and logs errors.
if ((${#STARTED[@]})) && is_component redis "${STARTED[@]}"; then
  launch redis
  for _ in $(seq 100); do redis_ready && break; component_alive redis || break; sleep 0.1; done
  if ! redis_ready; then
    tail -n 20 "$(log_file redis)" | sed "s/^/[redis] /" >&2
    die "redis does not answer on 127.0.0.1:$REDIS_PORT (log: $(log_file redis))"
  fi
fi
for name in "${STARTED[@]}"; do [[ $name == redis ]] || launch "$name"; done

# --- readiness -----------------------------------------------------------------------------
probe_args=(--url "$API_URL" --timeout "$TIMEOUT" --run-dir "$RUN_DIR" --log-dir "$LOG_DIR"
  --token-file "$STATE_DIR/token")
for name in "${ONLY[@]}"; do [[ $name == redis ]] || probe_args+=(--component "$name"); done
[[ $PROFILE == celery ]] && probe_args+=(--multi scheduler --multi triggerer)
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
log "Airflow $AIRFLOW_VERSION ($PROFILE profile) ready at $API_URL ($what) in ${elapsed}s"
cat >&2 <<USAGE
[airflow-start] token: curl -s $API_URL/auth/token   (all-admins: no credentials; or $STATE_DIR/token)
[airflow-start] api:   curl -s -H "Authorization: Bearer \$(cat $STATE_DIR/token)" $API_URL/api/v2/dags
[airflow-start] ui:    $API_URL/   (all admins: no login)
[airflow-start] dags:  $DAGS_DIR   env: $ENV_FILE   logs: $LOG_DIR
[airflow-start] stop:  scripts/airflow/stop.sh   (--all: PostgreSQL too; --only NAME [--signal KILL] [--leader-only]: one component)
USAGE
