#!/usr/bin/env bash
# Start a real SLURM cluster on this (Debian, root, no systemd) machine, plus an sshd on
# 127.0.0.1:2222 for a test user, for SSH-transport tests. Idempotent: running it again
# restarts nothing that is already healthy.
#
#   scripts/slurm/start.sh                  # with accounting (slurmdbd + MariaDB)
#   scripts/slurm/start.sh --no-accounting  # without slurmdbd: sacct is disabled
#   scripts/slurm/start.sh --nodes 3        # plus nodes jf-n1..jf-n3 (partition multi)
#   scripts/slurm/start.sh --nodes 0        # back to this machine's node alone
#
# This machine is always a node (partitions debug, the default, and other). --nodes N adds N
# nodes, each a slurmd in a network and UTS namespace of its own (its own hostname, and an
# address on the bridge jfbr0, 10.77.0.0/24; the file system is shared), forming partition
# `multi`: jobs there run on different hosts as far as SLURM and the jobs can tell, and a node
# can die alone. Without --nodes the node count of the previous start stays (the test
# fixtures call this script with no arguments).
#
# Environment written for tests: $STATE_DIR/env (source it).
set -euo pipefail

ACCOUNTING=1
NODES=
while (($#)); do
  case $1 in
    --no-accounting) ACCOUNTING=0 ;;
    --nodes) NODES=${2:?--nodes needs a number}; shift ;;
    --nodes=*) NODES=${1#--nodes=} ;;
    *) echo "usage: $0 [--no-accounting] [--nodes N]" >&2; exit 2 ;;
  esac
  shift
done

STATE_DIR=${JOBFORGE_SLURM_STATE:-/var/lib/jobforge-slurm}
SSH_PORT=${JOBFORGE_SSH_PORT:-2222}
SSH_USER=${JOBFORGE_SSH_USER:-jobforge}
CLUSTER=${JOBFORGE_CLUSTER_NAME:-jobforge}
DB_PASS=jobforge-slurmdbd
HOST=$(hostname -s)
started=$(date +%s.%N)

log() { printf '[slurm-start] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
[[ -z $NODES || $NODES =~ ^([0-9]|1[0-9]|20)$ ]] || die "--nodes must be 0..20, not '$NODES'"

# One start at a time: test sessions of several people call this script.
mkdir -p "$STATE_DIR"
exec 9>"$STATE_DIR/start.lock"
flock 9
# The daemons started below get `9>&-`: one that kept the lock's fd would hold it forever.
if [[ -z $NODES ]]; then
  NODES=$(cat "$STATE_DIR/nodes" 2>/dev/null || echo 0)
fi
echo "$NODES" > "$STATE_DIR/nodes"

# --- packages ------------------------------------------------------------------------------
# shellcheck source=../packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/../packages.sh"
# shellcheck source=conf.sh
source "$(dirname "${BASH_SOURCE[0]}")/conf.sh"
# shellcheck source=nodes.sh
source "$(dirname "${BASH_SOURCE[0]}")/nodes.sh"
ensure_packages slurmctld slurmd slurm-client munge slurmdbd mariadb-server openssh-server
# Java for the Spark clusters of `spark` groups (pyspark 4 needs 17+); pyspark is the
# package's `spark` extra.
ensure_packages openjdk-17-jre-headless
((NODES == 0)) || ensure_packages iproute2 util-linux

mkdir -p "$STATE_DIR" /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd \
  /run/slurm /run/munge /run/mysqld /run/sshd

# --- configuration -------------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$((MEM_MB * 80 / 100))
# Without DefMemPerCPU each job takes the node's whole memory and jobs run one at a time.
DEF_MEM_PER_CPU=$((REAL_MEM / CPUS / 4))
# Memory is enforced per job with cgroup v1 (this machine kind mounts it writable): a job
# over its --mem is killed by the kernel's OOM killer inside its cgroup, the batch goes on and
# SLURM reports OUT_OF_MEMORY, as on production clusters. Without a writable memory cgroup
# nothing is enforced and SLURM never says OUT_OF_MEMORY.
CGROUP_MEM=/sys/fs/cgroup/memory
if [[ -w $CGROUP_MEM ]] && mkdir "$CGROUP_MEM/jobforge-probe.$$" 2>/dev/null; then
  rmdir "$CGROUP_MEM/jobforge-probe.$$"
  TASK_PLUGIN=task/cgroup
  GATHER=jobacct_gather/cgroup
else
  log "WARNING: no writable memory cgroup ($CGROUP_MEM): memory limits are not enforced"
  TASK_PLUGIN=task/none
  GATHER=jobacct_gather/linux
fi
new_cgroup_conf=$(cat <<CONF
# Written by airflow-jobforge scripts/slurm/start.sh
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
CONF
)
if ((NODES == 0)); then
  new_conf=$(slurm_conf "$CLUSTER" "$HOST" "$TASK_PLUGIN" "$DEF_MEM_PER_CPU" \
    "$(slurm_acct_lines "$ACCOUNTING" localhost "$GATHER")" \
    "NodeName=$HOST CPUs=$CPUS RealMemory=$REAL_MEM State=UNKNOWN
$(slurm_partition_lines "$HOST")")
else
  # The controller is reached at the bridge's address: in a node's namespace 127.0.0.1 (what
  # this host's name resolves to) is the node's own loopback.
  mapfile -t node_addrs < <(ns_node_list "$NODES")
  new_conf=$(slurm_conf "$CLUSTER" "$HOST($NS_HOST_ADDR)" "$TASK_PLUGIN" "$DEF_MEM_PER_CPU" \
    "$(slurm_acct_lines "$ACCOUNTING" localhost "$GATHER")" \
    "NodeName=$HOST CPUs=$CPUS RealMemory=$REAL_MEM State=UNKNOWN
$(slurm_partition_lines "$HOST")
$(slurm_multi_node_lines "$NS_PARTITION" "$CPUS" $((REAL_MEM / 4)) "${node_addrs[@]}")" 1)
fi
conf_changed=0
if [[ ! -f /etc/slurm/slurm.conf ]] || [[ "$(cat /etc/slurm/slurm.conf)" != "$new_conf" ]]; then
  printf '%s\n' "$new_conf" > /etc/slurm/slurm.conf
  conf_changed=1
fi
if [[ ! -f /etc/slurm/cgroup.conf ]] || [[ "$(cat /etc/slurm/cgroup.conf)" != "$new_cgroup_conf" ]]; then
  printf '%s\n' "$new_cgroup_conf" > /etc/slurm/cgroup.conf
  conf_changed=1
fi

# --- namespace nodes: network (before the daemons: the controller's address is the bridge's)
ns_teardown_beyond "$NODES"
((NODES == 0)) || ns_network_up "$NODES"

# --- munge ---------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --force 9>&-
  wait_for 10 munged sh -c 'munge -n | unmunge'
fi

stop_daemon() {  # stop_daemon NAME: gone when it returns (a dying daemon still matches
  # pgrep, and the start below would then skip it). slurmctld saving its state with
  # slurmdbd already gone took 4+ s in CI: 15 s for a clean stop, then SIGKILL.
  if pkill -x "$1"; then
    for _ in $(seq 150); do pgrep -x "$1" >/dev/null || return 0; sleep 0.1; done
    pkill -9 -x "$1" || true
    for _ in $(seq 50); do pgrep -x "$1" >/dev/null || return 0; sleep 0.1; done
  fi
}

# --- accounting: MariaDB + slurmdbd --------------------------------------------------------
if ((ACCOUNTING)); then
  chown mysql:mysql /run/mysqld
  if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting mariadb"
    (mysqld_safe --skip-syslog >/dev/null 2>&1 9>&- &)
    wait_for 60 mariadb mysqladmin ping
  fi
  mysql -e "$(slurm_db_sql "$DB_PASS")"
  slurmdbd_conf localhost "$DB_PASS" > /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf
  if ! pgrep -x slurmdbd >/dev/null; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd 9>&-
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    conf_changed=1
  fi
fi

# --- slurmctld + slurmd --------------------------------------------------------------------
if ((conf_changed)); then
  stop_daemon slurmd  # this host's and the namespace nodes'
  stop_daemon slurmctld
fi
if ((!ACCOUNTING)); then
  stop_daemon slurmdbd  # after slurmctld: its shutdown still talks to slurmdbd
fi
if ! pgrep -x slurmctld >/dev/null; then
  log "starting slurmctld"
  /usr/sbin/slurmctld -i 9>&-
fi
wait_for 30 slurmctld scontrol ping
if [[ -z $(host_pids slurmd) ]]; then
  log "starting slurmd"
  mkdir -p "/var/lib/slurm/slurmd/$HOST"  # its spool dir with --nodes (unused otherwise)
  /usr/sbin/slurmd 9>&-
fi
for ((k = 1; k <= NODES; k++)); do
  ns_slurmd_running "$NS_PREFIX$k" || ns_start_slurmd "$NS_PREFIX$k"
done
node_ready() { sinfo -h -N -n "$1" -o '%t' | grep -Eq '^(idle|mix|alloc)$'; }
for node in "$HOST" $(ns_node_names "$NODES"); do
  if ! node_ready "$node"; then
    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
  fi
done
for node in "$HOST" $(ns_node_names "$NODES"); do
  wait_for 60 "node $node idle in sinfo" node_ready "$node"
done
if ((ACCOUNTING)); then
  wait_for 30 "sacct to answer" sacct -n -X --starttime=now-1hour
fi

# --- sshd on 127.0.0.1 for a non-root test user --------------------------------------------
id -u "$SSH_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SSH_USER"
SSH_DIR="$STATE_DIR/ssh"
# Its own log (no syslog here): one "Accepted publickey" line per login, which the tests count.
SSH_LOG=/var/log/jobforge-sshd.log
mkdir -p "$SSH_DIR"
[[ -f "$SSH_DIR/id_ed25519" ]] || ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/id_ed25519"
home=$(getent passwd "$SSH_USER" | cut -d: -f6)
install -d -m 700 -o "$SSH_USER" -g "$SSH_USER" "$home/.ssh"
install -m 600 -o "$SSH_USER" -g "$SSH_USER" "$SSH_DIR/id_ed25519.pub" "$home/.ssh/authorized_keys"
ssh-keygen -A >/dev/null
if pgrep -f "sshd -p $SSH_PORT" >/dev/null && ! pgrep -f "sshd -p $SSH_PORT .*-E $SSH_LOG" >/dev/null; then
  log "restarting sshd on 127.0.0.1:$SSH_PORT with its own log"  # started by an older script
  pkill -f "sshd -p $SSH_PORT" || true
  sleep 0.5
fi
if ! pgrep -f "sshd -p $SSH_PORT" >/dev/null; then
  log "starting sshd on 127.0.0.1:$SSH_PORT"
  /usr/sbin/sshd -p "$SSH_PORT" -o ListenAddress=127.0.0.1 -o PasswordAuthentication=no \
    -o PidFile=/run/sshd-jobforge.pid -o MaxStartups=100:30:200 -E "$SSH_LOG"
fi
wait_for 10 sshd bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSH_PORT"
ssh-keyscan -p "$SSH_PORT" 127.0.0.1 2>/dev/null > "$SSH_DIR/known_hosts"

cat > "$STATE_DIR/env" <<ENV
JOBFORGE_SLURM_HOST=$HOST
JOBFORGE_SLURM_ACCOUNTING=$ACCOUNTING
JOBFORGE_SSH_PORT=$SSH_PORT
JOBFORGE_SSH_USER=$SSH_USER
JOBFORGE_SSH_KEY=$SSH_DIR/id_ed25519
JOBFORGE_SSH_KNOWN_HOSTS=$SSH_DIR/known_hosts
JOBFORGE_SSH_LOG=$SSH_LOG
ENV
if ((NODES)); then
  printf 'JOBFORGE_SLURM_MULTI_PARTITION=%s\nJOBFORGE_SLURM_MULTI_NODES=%s\n' \
    "$NS_PARTITION" "$(ns_node_names "$NODES" | paste -sd,)" >> "$STATE_DIR/env"
fi

elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
log "cluster '$CLUSTER' ready on $HOST ($CPUS CPUs, ${REAL_MEM} MB, accounting=$ACCOUNTING)" \
  "+ $NODES namespace node(s) in ${elapsed}s"
cat >&2 <<USAGE
[slurm-start] try: sinfo; sbatch --wrap 'hostname'; squeue; sacct
[slurm-start] ssh: ssh -i $SSH_DIR/id_ed25519 -p $SSH_PORT $SSH_USER@127.0.0.1 sbatch --wrap hostname
[slurm-start] stop: scripts/slurm/stop.sh
USAGE
