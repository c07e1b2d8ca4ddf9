#!/usr/bin/env bash
# Stop what scripts/airflow/start.sh started. Idempotent.
#
#   scripts/airflow/stop.sh                               # every component of either profile,
#                                                         # Redis included (PostgreSQL stays)
#   scripts/airflow/stop.sh --all                         # ... and PostgreSQL too
#   scripts/airflow/stop.sh --only scheduler              # one component (repeatable)
#   scripts/airflow/stop.sh --only scheduler --signal KILL
#   scripts/airflow/stop.sh --only scheduler --signal KILL --leader-only
#   scripts/airflow/stop.sh --only worker-1 --signal KILL # a Celery worker's host gone
#   scripts/airflow/stop.sh --only redis                  # the broker (it saves its queue)
#   scripts/airflow/stop.sh --grace 5                     # SIGKILL 5 s after the signal
#
# A component is stopped by its session: SIGNAL (default TERM) to every process in it (its
# LocalExecutor workers, task runners and log server included), SIGKILL after a grace period
# (20 s after TERM, 5 s after KILL). A scheduler with a task running takes the whole 20 s:
# the LocalExecutor worker supervising the task ignores SIGTERM.
# --leader-only signals the component's main process alone, the way a crash looks: its workers
# and log server live on, and `start.sh --only NAME` cleans them up before starting it again.
set -euo pipefail
LOG_PREFIX=airflow-stop
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ONLY=()
SIGNAL=TERM
LEADER_ONLY=0
POSTGRES=0
GRACE=
while (($#)); do
  case $1 in
    --only) is_component "${2:-}" || die "--only takes one of: ${ALL_COMPONENTS[*]}"; ONLY+=("$2"); shift 2 ;;
    --signal) SIGNAL=${2:?--signal needs TERM, KILL, INT, ...}; SIGNAL=${SIGNAL#SIG}; shift 2 ;;
    --leader-only) LEADER_ONLY=1; shift ;;
    --grace) GRACE=${2:?--grace needs seconds}; shift 2 ;;
    --all) POSTGRES=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root"
take_lock
((${#ONLY[@]})) || ONLY=("${ALL_COMPONENTS[@]}")

# Stop in parallel: each waits out its own grace period.
pids=()
for name in "${ONLY[@]}"; do
  stop_component "$name" "$SIGNAL" "$LEADER_ONLY" "$GRACE" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done

if ((POSTGRES)); then
  PG=$(pg_version)
  if [[ -n $PG ]] && pg_lsclusters -h "$PG" main 2>/dev/null | awk '{print $4}' | grep -qx online; then
    log "stopping postgresql $PG/main"
    pg_ctlcluster "$PG" main stop -m fast || rc=1
  fi
fi
((rc == 0)) || die "some components did not stop"
log "stopped: ${ONLY[*]}$( ((POSTGRES)) && echo ' postgresql')$( ((LEADER_ONLY)) && echo " (SIG$SIGNAL to the main process only)")"
