# SLURM configuration text, shared by scripts/slurm/start.sh (this machine, plus namespace
# nodes with --nodes) and the container stack's entrypoint (docker/slurm/entrypoint.sh: a
# controller, slurmdbd and compute nodes in separate containers). Sourced, never run; every function prints text only.

# slurm_acct_lines ACCOUNTING DBD_HOST GATHER: the accounting part of slurm.conf.
# Sampled every second, so that MaxRSS and TotalCPU exist for short test jobs too.
slurm_acct_lines() {
  if (($1)); then
    cat <<CONF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$2
AccountingStoreFlags=job_comment
JobAcctGatherType=$3
JobAcctGatherFrequency=task=1
CONF
  else
    cat <<CONF
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
CONF
  fi
}

# slurm_conf CLUSTER CTLD_HOST TASK_PLUGIN DEF_MEM_PER_CPU ACCT_LINES NODE_LINES [PER_NODE]
# NODE_LINES: the NodeName= and PartitionName= lines. PER_NODE=1: slurmd's spool dir, pid
# file and log file are per node name (%n), for several slurmds sharing one file system
# (scripts/slurm/start.sh --nodes); a slurmd finding another's pid file would kill it.
slurm_conf() {
  local spool=/var/lib/slurm/slurmd pid=/run/slurm/slurmd.pid log=/var/log/slurm/slurmd.log
  if [[ ${7:-0} == 1 ]]; then
    spool=/var/lib/slurm/slurmd/%n pid=/run/slurm/slurmd-%n.pid log=/var/log/slurm/slurmd-%n.log
  fi
  cat <<CONF
# Written by airflow-jobforge scripts/slurm/start.sh
ClusterName=$1
SlurmctldHost=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=$3
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$4
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Start pending jobs on the next 1-s pass, not the default 3 s after a job ends: with one-job
# array tasks of 0.1 s on 2 CPUs that is 2 jobs/s instead of 0.7 (a real cluster tunes the same).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=$spool
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=$pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=$log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=10
MinJobAge=300
# A finished job stays in slurmctld's memory for MinJobAge s: 10,000 one-job jobs (ten arrays
# of 1,000) in five minutes would hit the default cap of 10,000 and sbatch would be refused.
MaxJobCount=200000
InactiveLimit=0
Waittime=0
$5
$6
CONF
}

# slurm_partition_lines NODES: the partitions every jobforge cluster has (debug is the default).
slurm_partition_lines() {
  cat <<CONF
PartitionName=debug Nodes=$1 Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes=$1 Default=NO MaxTime=INFINITE State=UP
CONF
}

# slurm_multi_node_lines PARTITION CPUS MEM_MB NODE:ADDR...: the extra nodes of a multi-node
# test cluster, each a slurmd at its own address, in a partition of their own (not the
# default: the single-node tests never land there). A dead node is noticed within
# SlurmdTimeout (300 s by default): 20 s lets a node-death test see NODE_FAIL in time.
slurm_multi_node_lines() {
  local partition=$1 cpus=$2 mem=$3 node names=()
  shift 3
  echo "SlurmdTimeout=20"
  for node in "$@"; do
    echo "NodeName=${node%%:*} NodeAddr=${node#*:} CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    names+=("${node%%:*}")
  done
  local IFS=,
  echo "PartitionName=$partition Nodes=${names[*]} Default=NO MaxTime=INFINITE State=UP"
}

# slurmdbd_conf DBD_HOST DB_PASS: slurmdbd.conf, its MariaDB on the same host.
slurmdbd_conf() {
  cat <<CONF
AuthType=auth/munge
DbdHost=$1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$2
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
CONF
}

# slurm_db_sql DB_PASS: the accounting database and its user (idempotent SQL).
slurm_db_sql() {
  echo "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}
