# Shared by scripts/airflow/start.sh and stop.sh (sourced, never run). Paths, the profiles'
# component lists, and how a component is found and stopped.
#
# Every component runs in its own session (setsid), so its session id is its pid. Stopping
# signals the whole session: the scheduler's LocalExecutor workers and the task runners they
# fork (each in its own process group, but still in the scheduler's session), and the
# scheduler's/triggerer's log servers (ports 8793/8794), which outlive a kill -9 of their parent.
# What detaches itself with setsid (a BashOperator's command, a SLURM job) is left alone, on
# purpose: jobs are meant to survive a component's restart.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE_DIR=${JOBFORGE_AIRFLOW_STATE:-/var/lib/jobforge-airflow}
AIRFLOW_HOME_DIR=${JOBFORGE_AIRFLOW_HOME:-$STATE_DIR/home}
DAGS_DIR=${JOBFORGE_AIRFLOW_DAGS_FOLDER:-$AIRFLOW_HOME_DIR/dags}
AIRFLOW_BIN=${JOBFORGE_AIRFLOW_BIN:-$REPO/.venv/bin/airflow}
API_HOST=127.0.0.1
# Where the api-server listens; the URL the components and tests use stays $API_HOST. A
# container (docker/airflow) binds 0.0.0.0 so that a published port reaches it.
API_BIND=${JOBFORGE_AIRFLOW_BIND:-$API_HOST}
API_PORT=${JOBFORGE_AIRFLOW_PORT:-8080}
# The metadata database: PostgreSQL on this host, managed by start.sh (the default), or an
# external one (e.g. the compose stack's `postgres` service) that start.sh only waits for.
DB_HOST=${JOBFORGE_AIRFLOW_DB_HOST:-127.0.0.1}
API_URL="http://$API_HOST:$API_PORT"
ENV_FILE=$STATE_DIR/env
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/logs
# Profiles: `local` (the default) runs one scheduler with the LocalExecutor; `celery` runs
# the CeleryExecutor with Redis as its broker, two Celery workers, and two schedulers and two
# triggerers (high availability). Components of one role share its Airflow command
# (scheduler-2 is a second `airflow scheduler`); each has its own session, log and pid file.
LOCAL_COMPONENTS=(api-server scheduler dag-processor triggerer)
CELERY_COMPONENTS=(redis api-server scheduler scheduler-2 dag-processor triggerer triggerer-2
  worker-1 worker-2)
ALL_COMPONENTS=("${CELERY_COMPONENTS[@]}")  # the local ones included
PROFILES=(local celery)
# The profile start.sh last started (start.sh --only keeps it; a full start.sh sets it).
PROFILE_FILE=$STATE_DIR/profile
REDIS_PORT=${JOBFORGE_REDIS_PORT:-6379}

current_profile() {
  local p=
  [[ -s $PROFILE_FILE ]] && p=$(cat "$PROFILE_FILE")
  [[ $p == celery ]] && echo celery || echo local
}

profile_components() {  # profile_components PROFILE: its component names, one per line
  case $1 in
    celery) printf '%s\n' "${CELERY_COMPONENTS[@]}" ;;
    *) printf '%s\n' "${LOCAL_COMPONENTS[@]}" ;;
  esac
}

# The running profile's components (docker/airflow/entrypoint.sh watches these).
mapfile -t COMPONENTS < <(profile_components "$(current_profile)")

# role_of NAME: the command a component runs (scheduler-2 is a scheduler, worker-1 a worker).
role_of() {
  case $1 in
    scheduler-*) echo scheduler ;;
    triggerer-*) echo triggerer ;;
    worker-*) echo worker ;;
    *) echo "$1" ;;
  esac
}

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# One start.sh/stop.sh at a time per state dir: test sessions of several people start the
# deployment concurrently. Long-lived children must not inherit fd 9 (close it with 9>&-):
# a component holding it would hold the lock for its whole life.
take_lock() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  if ! flock -n 9; then
    log "waiting for another start.sh/stop.sh to finish"
    flock -w 900 9 || die "could not lock $STATE_DIR/lock within 900 s"
  fi
}

is_component() {  # is_component NAME [LIST...]: NAME is one of LIST (default: any profile's)
  local name=$1 c
  shift
  (($#)) || set -- "${ALL_COMPONENTS[@]}"
  for c in "$@"; do [[ $c == "$name" ]] && return 0; done
  return 1
}

pid_file() { echo "$RUN_DIR/$1.pid"; }
log_file() { echo "$LOG_DIR/$1.log"; }

# The pid recorded for a component, or nothing.
recorded_pid() {
  local f
  f=$(pid_file "$1")
  [[ -s $f ]] && cat "$f"
  return 0
}

# alive PID NAME: the process lives (not a zombie) and is that component, not a recycled pid.
# (The api-server retitles itself "airflow api_server -- host:... port:..."; a Celery worker
# "[celeryd: worker-1@host:MainProcess] -active- (celery worker ...)"; Redis
# "redis-server 127.0.0.1:6379".)
alive() {
  local pid=$1 name=$2 state cmd role
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  role=$(role_of "$name")
  case $role in
    redis) [[ $cmd == *redis-server* ]] ;;
    worker) [[ $cmd == *celery* && $cmd == *"$name@"* ]] ;;
    *) [[ $cmd == *airflow* && ($cmd == *"$role"* || $cmd == *"${role//-/_}"*) ]] ;;
  esac
}

component_alive() { alive "$(recorded_pid "$1")" "$1"; }

# Processes left in a component's session (its sid is the recorded pid).
session_pids() {
  local sid=$1
  [[ -n $sid && $sid -gt 1 ]] || return 0
  pgrep -s "$sid" || true
}

# Sessions of this deployment's NAME component that no pid file knows (a start raced by
# another, a pid file lost): found by the JOBFORGE_AIRFLOW_COMPONENT/STATE variables every
# component is started with, on processes that are airflow itself. (A SLURM job inherits the
# variables too, through sbatch's --export=ALL, but it runs no `airflow` command.)
stray_sessions() {
  local name=$1 known f p cmd sid
  known=$(recorded_pid "$name")
  for f in $(grep -lzx "JOBFORGE_AIRFLOW_COMPONENT=$name" /proc/[0-9]*/environ 2>/dev/null); do
    grep -qzx "JOBFORGE_AIRFLOW_STATE=$STATE_DIR" "$f" 2>/dev/null || continue
    p=${f#/proc/}; p=${p%/environ}
    cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
    [[ $cmd == "airflow "* || $cmd == *"bin/airflow "* || $cmd == "[celeryd: "* ||
      $cmd == "redis-server "* || $cmd == *"bin/redis-server "* ]] || continue
    sid=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $4}') || continue
    [[ -n $sid && $sid != "$known" ]] && echo "$sid"
  done | sort -u
}

# kill_session NAME SID SIGNAL [GRACE]: SIGNAL to every process of the session; after GRACE
# seconds (default 20 for TERM, 5 for KILL), SIGKILL to what is left.
kill_session() {
  local name=$1 sid=$2 sig=$3 grace=${4:-} deadline
  [[ -n $(session_pids "$sid") ]] || return 0
  log "$name: SIG$sig to session $sid ($(session_pids "$sid" | wc -l) processes)"
  pkill -s "$sid" --signal "$sig" 2>/dev/null || true
  if [[ -z $grace ]]; then
    grace=20
    [[ $sig == KILL || $sig == 9 ]] && grace=5
  fi
  deadline=$((SECONDS + grace))
  while [[ -n $(session_pids "$sid") ]] && ((SECONDS < deadline)); do sleep 0.2; done
  if [[ -n $(session_pids "$sid") ]]; then
    log "$name: still running after ${grace}s: SIGKILL to session $sid"
    pkill -s "$sid" --signal KILL 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [[ -n $(session_pids "$sid") ]] && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  [[ -z $(session_pids "$sid") ]] || die "$name: session $sid does not die: $(session_pids "$sid" | xargs)"
}

stop_strays() {  # stop_strays NAME SIGNAL [GRACE]
  local sid
  for sid in $(stray_sessions "$1"); do
    log "$1: a session no pid file knows: $sid"
    kill_session "$1" "$sid" "$2" "${3:-}"
  done
}

# stop_component NAME SIGNAL LEADER_ONLY [GRACE]
#   LEADER_ONLY=0: SIGNAL to the whole session (and to strays, see stray_sessions); after
#                  GRACE seconds, KILL what is left; the pid file goes.
#   LEADER_ONLY=1: SIGNAL to the main process only (a crash, as a fault test wants it): its
#                  workers and log server live on, and the pid file stays; the next
#                  start.sh --only NAME cleans up the leftovers before starting.
stop_component() {
  local name=$1 sig=$2 leader_only=$3 grace=${4:-} pid deadline
  pid=$(recorded_pid "$name")
  if ((leader_only)); then
    if alive "$pid" "$name"; then
      log "$name: SIG$sig to pid $pid only"
      kill -s "$sig" "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 30))
      while alive "$pid" "$name" && ((SECONDS < deadline)); do sleep 0.1; done
    fi
    return 0
  fi
  [[ -z $pid ]] || kill_session "$name" "$pid" "$sig" "$grace"
  stop_strays "$name" "$sig" "$grace"
  rm -f "$(pid_file "$name")" "$RUN_DIR/$name.config"
}

pg_version() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1; }

# The local PostgreSQL cluster with role and database `airflow` (idempotent). Used by
# start.sh on a host and by the compose stack's `postgres` service (docker/postgres/).
ensure_postgres() {
  # shellcheck source=../packages.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../packages.sh"
  ensure_packages postgresql
  local pg
  pg=$(pg_version)
  [[ -n $pg ]] || die "postgresql is installed but /usr/lib/postgresql holds no version"
  pg_lsclusters -h "$pg" main >/dev/null 2>&1 || { log "creating cluster $pg/main"; pg_createcluster "$pg" main >/dev/null; }
  if ! pg_lsclusters -h "$pg" main | awk '{print $4}' | grep -qx online; then
    log "starting postgresql $pg/main"
    pg_ctlcluster "$pg" main start 9>&-
  fi
  for _ in $(seq 150); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
  pg_isready -q -h 127.0.0.1 || die "postgresql does not answer on 127.0.0.1 (see /var/log/postgresql/postgresql-$pg-main.log)"
  psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }
  if [[ $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'airflow'") != 1 ]]; then
    log "creating role airflow"
    psql_admin -c "CREATE ROLE airflow LOGIN PASSWORD 'airflow'"
  fi
  if [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'airflow'") != 1 ]]; then
    log "creating database airflow"
    psql_admin -c "CREATE DATABASE airflow OWNER airflow"
  fi
}
