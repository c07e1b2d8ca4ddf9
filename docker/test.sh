#!/usr/bin/env bash
# The container stack end to end: start dockerd if none answers, build the base image (once)
# and the two images, bring the stack up, trigger the stack's DAG (jobforge_docker) through
# Airflow's REST API, wait for the run, check the run's state and every job's result record
# (finished, return code 0; the sims batches on both compute nodes), check the published
# port, tear everything down (volumes too), and stop the dockerd it started (a dockerd that
# was running before stays up), passed or failed. Prints the time of every phase.
#
#   docker/test.sh            # as root
#   KEEP=1 docker/test.sh     # leave the stack (and dockerd) up afterwards (docker/README.md)
#
# The api-server is published on 127.0.0.1:$JOBFORGE_DOCKER_PORT (8080; 18080 when 8080 is
# taken here, e.g. by scripts/airflow/start.sh's deployment). The test itself talks to the API
# from inside the airflow container (docker-compose exec ... curl), so a broken userland proxy
# shows as one failed check at the end, not as a hung test.
set -euo pipefail
LOG_PREFIX=docker-test
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DAG_ID=jobforge_docker
CONFIG=$DOCKER_DIR/dags/jobforge_docker.json
RUN_TIMEOUT=${JOBFORGE_DOCKER_RUN_TIMEOUT:-600}
UP_TIMEOUT=${JOBFORGE_DOCKER_UP_TIMEOUT:-600}

[[ $(id -u) -eq 0 ]] || die "must run as root (apt, dockerd)"
if [[ -z ${JOBFORGE_DOCKER_PORT:-} ]]; then
  JOBFORGE_DOCKER_PORT=8080
  if ss -ltnH 'sport = :8080' 2>/dev/null | grep -q .; then JOBFORGE_DOCKER_PORT=18080; fi
fi
export JOBFORGE_DOCKER_PORT
cd "$DOCKER_DIR"
compose() { "$COMPOSE" -f "$DOCKER_DIR/docker-compose.yml" "$@"; }

TIMES=()
t_start=$(date +%s)
t_phase=$t_start
phase() {  # phase NAME: close the current phase under NAME
  local now
  now=$(date +%s)
  TIMES+=("$1=$((now - t_phase))s")
  log "phase $1 done in $((now - t_phase))s"
  t_phase=$now
}
report() { log "timings: ${TIMES[*]} total=$(($(date +%s) - t_start))s"; }

# The dockerd processes running before this script: ensure_daemon starts one only if none
# answers, and only one this script started is stopped at its end.
DOCKERD_BEFORE=" $(pgrep -x dockerd | tr '\n' ' ' || true) "
own_dockerd() {  # the pids of dockerd processes that were not running when this script began
  local pid
  for pid in $(pgrep -x dockerd || true); do
    [[ $DOCKERD_BEFORE == *" $pid "* ]] || ! alive "$pid" || echo "$pid"
  done
}
alive() {  # alive PID: running, not a zombie (dockerd's parent, setsid's subshell, is gone)
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}
unset DOCKERD_OURS  # set once ensure_daemon has answered: the dockerd it started, if any
stop_own_dockerd() {
  local pids pid children deadline
  # Before the daemon answered (ensure_daemon failed), whatever dockerd appeared since.
  pids=${DOCKERD_OURS-$(own_dockerd || true)}
  [[ -n $pids ]] || return 0
  if [[ ${KEEP:-0} == 1 ]]; then
    log "KEEP=1: the dockerd this test started stays up (pid ${pids//$'\n'/ })"
    return 0
  fi
  for pid in $pids; do
    children=$(pgrep -P "$pid" -x containerd || true)  # its own containerd, if it runs one
    log "stopping the dockerd this test started (pid $pid)"
    kill "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 60))
    while alive "$pid"; do
      if ((SECONDS >= deadline)); then
        log "dockerd $pid still up after 60 s: SIGKILL"
        # shellcheck disable=SC2086  # pids, one per word
        kill -9 "$pid" $children 2>/dev/null || true
        break
      fi
      sleep 0.5
    done
  done
}
STACK=0  # 1 once the stack may be up: the end takes it down
teardown() {
  local rc=$?
  if ((STACK)); then
    if ((rc)); then
      log "FAILED: the last lines of every container's log"
      compose logs --no-color --tail=40 >&2 || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
      log "KEEP=1: the stack stays up (docker-compose -f $DOCKER_DIR/docker-compose.yml down -v)"
    else
      compose down -v --remove-orphans >/dev/null 2>&1 || true
      ((rc)) || phase down
    fi
  fi
  stop_own_dockerd
  report
  exit "$rc"
}
# From the first step on: a dockerd started for a build that then failed is stopped too.
trap teardown EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tools
ensure_daemon
DOCKERD_OURS=$(own_dockerd || true)
phase daemon
"$DOCKER_DIR/build-base.sh"
phase base
stage_ca_certs
compose build -q --force-rm
phase build

STACK=1
compose down -v --remove-orphans >/dev/null 2>&1 || true
compose up -d
log "waiting for Airflow in the airflow container (scripts/airflow/start.sh's readiness wait)"
deadline=$((SECONDS + UP_TIMEOUT))
until compose exec -T airflow test -f /var/lib/jobforge-airflow/ready 2>/dev/null; do
  [[ -n $(compose ps -q airflow) ]] && [[ $("$DOCKER" inspect -f '{{.State.Running}}' "$(compose ps -q airflow)") == true ]] ||
    die "the airflow container stopped"
  ((SECONDS < deadline)) || die "Airflow not ready within ${UP_TIMEOUT}s"
  sleep 3
done
compose exec -T login sinfo -N >&2
phase up

# --- the run, through the REST API ---------------------------------------------------------
API=http://127.0.0.1:8080
TOKEN=$(compose exec -T airflow curl -sf "$API/auth/token" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
api() {  # api METHOD PATH [JSON]
  compose exec -T airflow curl -sSf -X "$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$API$2"
}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
api PATCH "/api/v2/dags/$DAG_ID" '{"is_paused": false}' >/dev/null
RUN_ID=$(api POST "/api/v2/dags/$DAG_ID/dagRuns" '{"logical_date": null}' | field dag_run_id)
log "triggered $DAG_ID: run $RUN_ID"
deadline=$((SECONDS + RUN_TIMEOUT))
while :; do
  state=$(api GET "/api/v2/dags/$DAG_ID/dagRuns/$RUN_ID" | field state)
  [[ $state == success || $state == failed ]] && break
  ((SECONDS < deadline)) || die "run $RUN_ID still $state after ${RUN_TIMEOUT}s"
  sleep 5
done
log "run $RUN_ID: $state"
api GET "/api/v2/dags/$DAG_ID/dagRuns/$RUN_ID/taskInstances" |
  python3 -c 'import json, sys
for t in json.load(sys.stdin)["task_instances"]:
    print("[docker-test]   %s: %s" % (t["task_id"], t["state"]), file=sys.stderr)'
phase run

# --- the records, as the login node sees the shared output volume --------------------------
records=$(compose exec -T login sh -c 'cat /scratch/jobforge/docker/*/results/*.jsonl')
check=$(cat <<'PY'
import json
import sys

config, state = sys.argv[1], sys.argv[2]
jobs = {job["name"]: job["submission_group"] for job in json.load(open(config))["jobs"]}
records = {}
for line in sys.stdin:
    if line.strip():
        record = json.loads(line)
        records[record["name"]] = record
problems = []
if state != "success":
    problems.append(f"the run's state is {state}, not success")
for name in jobs:
    record = records.get(name)
    if record is None:
        problems.append(f"{name}: no result record")
    elif record["status"] != "finished" or record["return_code"] != 0:
        problems.append(f"{name}: {record['status']}, return code {record['return_code']}")
hosts = {records[n]["host"] for n, g in jobs.items() if g == "sims" and n in records}
if hosts != {"c1", "c2"}:
    problems.append(f"the sims batches ran on {sorted(hosts)}, not on c1 and c2")
for name, record in sorted(records.items()):
    print(f"[docker-test]   {name}: {record['status']} rc={record['return_code']} "
          f"host={record['host']} batch={record['batch']} slurm job {record['hpc_job_id']}",
          file=sys.stderr)
if problems:
    sys.exit("[docker-test] FAILED: " + "; ".join(problems))
print(f"[docker-test] all {len(jobs)} jobs finished with return code 0 on {sorted(hosts)}",
      file=sys.stderr)
PY
)
python3 -c "$check" "$CONFIG" "$state" <<<"$records"

# --- the published port, from this machine -------------------------------------------------
curl -sf "http://127.0.0.1:$JOBFORGE_DOCKER_PORT/api/v2/version" >/dev/null ||
  die "the api-server does not answer on the published 127.0.0.1:$JOBFORGE_DOCKER_PORT"
log "published port 127.0.0.1:$JOBFORGE_DOCKER_PORT answers"

# --- the metadata database is the postgres service's --------------------------------------
compose exec -T airflow sh -c 'grep -q "@postgres:5432/" "$JOBFORGE_AIRFLOW_STATE/env" 2>/dev/null ||
  grep -q "@postgres:5432/" /var/lib/jobforge-airflow/env' ||
  die "Airflow's metadata database is not the postgres service"
if compose exec -T airflow pgrep -x postgres >/dev/null; then
  die "a PostgreSQL runs inside the airflow container"
fi
log "Airflow's metadata database is the postgres service"
phase check
log "PASSED"
