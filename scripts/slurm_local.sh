#!/usr/bin/env bash
# A real SLURM cluster on this one machine, for tests and for trying slurm/train.sbatch:
# one slurmctld, two slurmd (nodes n1 and n2 on two ports of 127.0.0.1) and munged (as the `munge` user,
# with a key of its own), everything under DIR.
#
#   scripts/slurm_local.sh start DIR     # prints `export SLURM_CONF=DIR/slurm.conf` (also in DIR/env)
#   . DIR/env && sbatch --gpus-per-node=0 --ntasks-per-node=1 --cpus-per-task=1 --mem=0 slurm/train.sbatch
#   scripts/slurm_local.sh stop DIR      # cancels the jobs, stops every daemon by its pid
#
# Needs root (slurmd runs jobs as their user; munged is started as `munge`), Debian's `slurm-wlm` and `munge`
# (`apt-get install -y slurm-wlm munge`), and DIR somewhere the munge user can reach (e.g. under /tmp).
# Adds `127.0.0.1 n1 n2` to /etc/hosts when n1 does not resolve: Lightning takes the master address from
# the first node name and c10d retries an unresolvable name forever.
#
# Made for tests (see docs/scale.md): a requeued job waits `cred_expire` seconds in BeginTime before it can
# start again; SLURM's default is 120 s, this cluster sets 10 (CRED_EXPIRE=<s> to change). The scheduler
# runs every 2 s instead of every 60 s. Each node claims CPUS (default 4) CPUs whatever the machine has.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
ACTION=$1
DIR=$2
CPUS=${CPUS:-4}
CRED_EXPIRE=${CRED_EXPIRE:-10}
NODES=(n1 n2)

die() { echo "slurm_local: $*" >&2; exit 1; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Stop the process whose pid is in file $1: TERM, then KILL after a few seconds.
stop_pidfile() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for <seconds> <what> <command...>
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up within ${seconds}s (logs: $DIR/log)"
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (slurmd and munged run as root and as munge)"
  for tool in slurmctld slurmd munged mungekey sbatch scontrol runuser; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y slurm-wlm munge"
  done
  id munge >/dev/null 2>&1 || die "no munge user: apt-get install -y munge"
  if [ -f "$DIR/slurmctld.pid" ] && pid_alive "$(cat "$DIR/slurmctld.pid")"; then
    die "a cluster is already running in $DIR (stop it first)"
  fi
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  chmod 755 "$DIR"
  runuser -u munge -- test -x "$DIR" || die "the munge user cannot reach $DIR: use a folder under /tmp"
  if ! getent hosts n1 >/dev/null || ! getent hosts n2 >/dev/null; then
    echo "127.0.0.1 n1 n2" >> /etc/hosts
  fi
  mkdir -p "$DIR/ctld" "$DIR/log" "$DIR/munge" "${NODES[@]/#/$DIR/spool/}"

  # munged as the munge user, with a key of its own and its socket in DIR.
  local munge=$DIR/munge
  chown munge:munge "$munge"
  chmod 711 "$munge"  # munged wants the socket folder searchable by all
  [ -f "$munge/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$munge/munge.key" --bits=1024
  runuser -u munge -- munged --key-file="$munge/munge.key" --socket="$munge/munge.socket" \
    --pid-file="$munge/munged.pid" --log-file="$munge/munged.log" --seed-file="$munge/munged.seed"
  wait_for 10 munged test -S "$munge/munge.socket"
  cp "$munge/munged.pid" "$DIR/munged.pid"

  local host ctld_port mem
  host=$(hostname)
  ctld_port=$(free_port)
  mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
  {
    echo "# Written by scripts/slurm_local.sh: a two-node SLURM cluster on localhost."
    echo "ClusterName=local"
    echo "SlurmctldHost=$host(127.0.0.1)"
    echo "SlurmctldPort=$ctld_port"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$munge/munge.socket,cred_expire=$CRED_EXPIRE"
    echo "StateSaveLocation=$DIR/ctld"
    echo "SlurmdSpoolDir=$DIR/spool/%n"
    echo "SlurmctldPidFile=$DIR/slurmctld.pid"
    echo "SlurmdPidFile=$DIR/slurmd-%n.pid"
    echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
    echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "SwitchType=switch/none"
    echo "MpiDefault=none"
    echo "PropagateResourceLimits=NONE"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "SchedulerType=sched/backfill"
    echo "SchedulerParameters=sched_interval=2,bf_interval=2"
    echo "SlurmdParameters=config_overrides"
    echo "JobRequeue=1"
    echo "ReturnToService=2"
    echo "MinJobAge=3600"
    echo "KillWait=5"
    echo "InactiveLimit=0"
    echo "SlurmdTimeout=300"
    local port
    for node in "${NODES[@]}"; do
      port=$(free_port)
      echo "NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 Port=$port CPUs=$CPUS RealMemory=$mem State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
  } > "$DIR/slurm.conf"
  echo "export SLURM_CONF=$DIR/slurm.conf" > "$DIR/env"
  export SLURM_CONF=$DIR/slurm.conf

  slurmctld -f "$SLURM_CONF" -i
  wait_for 15 slurmctld scontrol ping
  for node in "${NODES[@]}"; do
    slurmd -f "$SLURM_CONF" -N "$node"
  done
  wait_for 30 "the nodes" nodes_idle
  echo "export SLURM_CONF=$SLURM_CONF"
}

nodes_idle() {
  local states
  states=$(sinfo -h -N -o "%t" 2>/dev/null | sort -u | tr '\n' ' ')
  [ "$states" = "idle " ] || [ "$states" = "idle mix " ] || [ "$states" = "mix " ] || [ "$states" = "alloc " ]
}

stop() {
  [ -d "$DIR" ] || return 0
  DIR=$(cd "$DIR" && pwd)
  export SLURM_CONF=$DIR/slurm.conf
  if [ -f "$DIR/slurmctld.pid" ] && pid_alive "$(cat "$DIR/slurmctld.pid")"; then
    # Jobs first, so no step outlives its slurmd.
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    [ -n "$jobs" ] && scancel $jobs 2>/dev/null || true
    for _ in $(seq 100); do
      [ -z "$(squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  for node in "${NODES[@]}"; do stop_pidfile "$DIR/slurmd-$node.pid"; done
  stop_pidfile "$DIR/slurmctld.pid"
  stop_pidfile "$DIR/munged.pid"
  rm -f "$DIR/munge/munged.pid"
}

status() {
  DIR=$(cd "$DIR" && pwd)
  export SLURM_CONF=$DIR/slurm.conf
  sinfo -N
  squeue
}

case $ACTION in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
