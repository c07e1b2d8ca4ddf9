# The namespace nodes of scripts/slurm/start.sh --nodes N (sourced, never run; needs `log`).
#
# Node jf-nK is a slurmd in network namespace jf-nK (`ip netns`: its own interfaces and
# ports, so every slurmd listens on 6818 and none sees another's jobs' sockets) and in a UTS
# namespace of its own (`hostname` says jf-nK, as on a real node). Its address 10.77.0.(10+K)
# sits on the bridge jfbr0, whose host side 10.77.0.1 is where the nodes reach slurmctld;
# traffic stays on that bridge and loopback. The mount namespace is shared: the nodes see the
# same file system (/etc/slurm, munge's socket, the run directories), as compute nodes see a
# shared file system, and /etc/hosts gets one line per node so names resolve everywhere.

NS_PREFIX=jf-n
NS_BRIDGE=jfbr0
NS_VETH=jfv  # host side of node K's link: jfvK (eth0 in the node)
NS_NET=10.77.0
NS_HOST_ADDR=$NS_NET.1
NS_PARTITION=multi
NS_HOSTS_MARK="# jobforge-slurm node"

ns_node_names() {  # ns_node_names N: jf-n1 ... jf-nN
  local k
  for ((k = 1; k <= $1; k++)); do printf '%s%d\n' "$NS_PREFIX" "$k"; done
}

ns_node_list() {  # ns_node_list N: NAME:ADDR, one per line
  local k
  for ((k = 1; k <= $1; k++)); do printf '%s%d:%s.%d\n' "$NS_PREFIX" "$k" "$NS_NET" $((10 + k)); done
}

# host_pids NAME: pids of the processes called NAME in this host's network namespace (the
# namespace nodes run daemons of the same names).
host_pids() {
  local pid own
  own=$(readlink /proc/self/ns/net)
  for pid in $(pgrep -x "$1"); do
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$own" ]] && echo "$pid"
  done
  return 0
}

# ns_hosts N: /etc/hosts with exactly the lines of nodes 1..N. Written in place: /etc/hosts
# may be a bind mount that a rename would not replace.
ns_hosts() {
  local want current
  want=$(grep -v -- "$NS_HOSTS_MARK\$" /etc/hosts || true)
  while IFS=: read -r name addr; do
    want+=$'\n'"$addr $name $NS_HOSTS_MARK"
  done < <(ns_node_list "$1")
  current=$(cat /etc/hosts)
  [[ $current == "$want" ]] || printf '%s\n' "$want" > /etc/hosts
}

# ns_network_up N: the bridge and nodes 1..N's namespaces, links and addresses (idempotent).
ns_network_up() {
  local name addr k=0
  if ! ip link show "$NS_BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $NS_BRIDGE ($NS_HOST_ADDR/24)"
    ip link add "$NS_BRIDGE" type bridge
  fi
  ip addr replace "$NS_HOST_ADDR/24" dev "$NS_BRIDGE"
  ip link set "$NS_BRIDGE" up
  while IFS=: read -r name addr; do
    k=$((k + 1))
    [[ -e /run/netns/$name ]] || ip netns add "$name"
    if ! ip link show "$NS_VETH$k" >/dev/null 2>&1; then
      ip -n "$name" link del eth0 2>/dev/null || true
      ip link add "$NS_VETH$k" type veth peer name eth0 netns "$name"
    fi
    ip link set "$NS_VETH$k" master "$NS_BRIDGE" up
    ip -n "$name" addr replace "$addr/24" dev eth0
    ip -n "$name" link set eth0 up
    ip -n "$name" link set lo up
  done < <(ns_node_list "$1")
  ns_hosts "$1"
}

# ns_slurmd_running NAME: node NAME's slurmd is alive in its namespace.
ns_slurmd_running() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == slurmd ]] && return 0
  done
  return 1
}

# ns_start_slurmd NAME: slurmd of node NAME in its network namespace and a new UTS namespace
# named after it. nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup
# hierarchies slurmd's task/cgroup needs.
ns_start_slurmd() {
  log "starting slurmd of node $1"
  mkdir -p "/var/lib/slurm/slurmd/$1"
  nsenter --net="/run/netns/$1" -- unshare --uts -- \
    /bin/sh -c 'hostname "$1" && exec /usr/sbin/slurmd -N "$1"' sh "$1" 9>&-
}

# ns_kill NAME: every process of node NAME, at once (what a node's death leaves).
ns_kill() {
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
}

# ns_teardown_beyond N: nodes numbered above N gone (processes, namespace, link, hosts line);
# with N=0 the bridge too.
ns_teardown_beyond() {
  local ns k
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns =~ ^$NS_PREFIX([0-9]+)$ ]] || continue
    k=${BASH_REMATCH[1]}
    ((k > $1)) || continue
    log "removing node $ns"
    ns_kill "$ns"
    ip link del "$NS_VETH$k" 2>/dev/null || true
    ip netns del "$ns"
  done
  if (($1 == 0)) && ip link show "$NS_BRIDGE" >/dev/null 2>&1; then
    ip link del "$NS_BRIDGE"
  fi
  ns_hosts "$1"
}
