#!/usr/bin/env bash
# The SLURM image's entrypoint: ROLE is one of slurmdbd, slurmctld, slurmd, login. Every role
# writes the same slurm.conf (scripts/slurm/conf.sh, as scripts/slurm/start.sh does on one
# host), runs munged with the key shared through $SHARED, then its daemon in the foreground.
#
# Shared volume $SHARED (/jobforge/etc): munge.key (made by slurmctld), ssh/id_ed25519[.pub]
# (made by login: the key Airflow logs in to it with).
# The cluster's shape comes from the environment: JOBFORGE_NODES (c[1-2]), JOBFORGE_NODE_CPUS
# (2), JOBFORGE_NODE_MEM_MB (2048).
set -euo pipefail
ROLE=${1:?usage: entrypoint.sh slurmdbd|slurmctld|slurmd|login}
SHARED=${JOBFORGE_SHARED:-/jobforge/etc}
SCRATCH=${JOBFORGE_SCRATCH:-/scratch/jobforge}
CLUSTER=${JOBFORGE_CLUSTER_NAME:-jobforge}
NODES=${JOBFORGE_NODES:-c[1-2]}
NODE_CPUS=${JOBFORGE_NODE_CPUS:-2}
NODE_MEM=${JOBFORGE_NODE_MEM_MB:-2048}
SSH_USER=jobforge
DB_PASS=jobforge-slurmdbd

log() { printf '[%s] %s\n' "$ROLE" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}
# shellcheck source=../../scripts/slurm/conf.sh
source /opt/jobforge/conf.sh

mkdir -p "$SHARED" /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd \
  /run/slurm /run/munge /run/mysqld /run/sshd

# No systemd and no cgroup hierarchy of their own in these containers: processes are tracked
# through /proc and nothing is constrained (memory limits are the host cluster's business,
# see scripts/slurm/start.sh).
slurm_conf "$CLUSTER" slurmctld task/none $((NODE_MEM / NODE_CPUS / 4)) \
  "$(slurm_acct_lines 1 slurmdbd jobacct_gather/linux)" \
  "NodeName=$NODES CPUs=$NODE_CPUS RealMemory=$NODE_MEM State=UNKNOWN
$(slurm_partition_lines "$NODES")" >/etc/slurm/slurm.conf

# --- munge: the controller makes the key once, everyone else waits for it -----------------
if [[ $ROLE == slurmctld && ! -s $SHARED/munge.key ]]; then
  dd if=/dev/urandom bs=1 count=1024 of="$SHARED/munge.key.tmp" status=none
  mv "$SHARED/munge.key.tmp" "$SHARED/munge.key"
fi
wait_for 120 "$SHARED/munge.key" test -s "$SHARED/munge.key"
install -o munge -g munge -m 400 "$SHARED/munge.key" /etc/munge/munge.key
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
runuser -u munge -- /usr/sbin/munged --force
wait_for 10 munged sh -c 'munge -n | unmunge'

case $ROLE in
  slurmdbd)
    chown mysql:mysql /run/mysqld
    (mysqld_safe --skip-syslog >/dev/null 2>&1 &)
    wait_for 60 mariadb mysqladmin ping
    mysql -e "$(slurm_db_sql "$DB_PASS")"
    slurmdbd_conf slurmdbd "$DB_PASS" >/etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf
    /usr/sbin/slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
      sacctmgr -i add cluster "$CLUSTER" >/dev/null
    log "slurmdbd ready, cluster $CLUSTER registered"
    exec tail -F /var/log/slurm/slurmdbd.log
    ;;
  slurmctld)
    # Accounting first: a controller that starts before its cluster exists in slurmdbd
    # records no jobs until restarted.
    wait_for 180 "cluster $CLUSTER in slurmdbd" \
      sh -c "sacctmgr -n -P list cluster format=cluster | grep -qx '$CLUSTER'"
    log "starting slurmctld"
    exec /usr/sbin/slurmctld -D -i
    ;;
  slurmd)
    wait_for 180 slurmctld scontrol ping
    log "starting slurmd as $(hostname -s)"
    exec /usr/sbin/slurmd -D
    ;;
  login)
    mkdir -p "$SHARED/ssh" "$SCRATCH"
    chown "$SSH_USER:$SSH_USER" "$SCRATCH"
    [[ -s $SHARED/ssh/id_ed25519 ]] || {
      ssh-keygen -q -t ed25519 -N '' -C "airflow@jobforge" -f "$SHARED/ssh/tmp_key"
      mv "$SHARED/ssh/tmp_key.pub" "$SHARED/ssh/id_ed25519.pub"
      mv "$SHARED/ssh/tmp_key" "$SHARED/ssh/id_ed25519"
    }
    install -d -m 700 -o "$SSH_USER" -g "$SSH_USER" "/home/$SSH_USER/.ssh"
    install -m 600 -o "$SSH_USER" -g "$SSH_USER" "$SHARED/ssh/id_ed25519.pub" \
      "/home/$SSH_USER/.ssh/authorized_keys"
    ssh-keygen -A >/dev/null
    wait_for 180 slurmctld scontrol ping
    log "starting sshd"
    exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no -o MaxStartups=100:30:200
    ;;
  *) die "unknown role $ROLE" ;;
esac
