#!/usr/bin/env bash
# A one-machine SLURM cluster for trying and testing cluster/slurm/er-grid.sbatch.
#
#   tools/slurm_local.sh install     # slurmctld, slurmd, the client commands and munge, with apt-get
#   tools/slurm_local.sh start DIR   # munged, slurmctld and slurmd, everything of theirs in DIR
#   tools/slurm_local.sh stop DIR    # those three daemons, by the PIDs they wrote in DIR
#
# `install` needs root and apt-get (Debian's slurm-wlm packages, 22.05 on bookworm; ~15 s with
# the package lists fresh); where either is missing it exits 3 with one line saying why.
# `start` writes DIR/slurm.conf (one node `localhost` with CPUs=$ER_GRID_SLURM_CPUS, default 2,
# in the default partition `debug`; free ports; state, spool, logs and PID files in DIR), a
# munge key and munged's socket in DIR (nothing under /etc or /run is used), starts the three
# daemons and waits until the node is idle. Point the client commands at it with
#   export SLURM_CONF=DIR/slurm.conf
# `stop` sends SIGTERM to exactly the PIDs in DIR/*.pid (then SIGKILL to any still alive after
# 10 s): never a daemon it did not start.
set -euo pipefail

die() { echo "slurm_local.sh: $1" >&2; exit "${2:-1}"; }

PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(slurmd slurmctld munged)  # stop order: the node first, munge last

install() {
    if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    "$(dirname "$0")/apt_install.sh" "${PACKAGES[@]}" || exit 3
}

free_ports() {  # N free TCP ports on 127.0.0.1, one a line
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_conf() {
    local dir=$1 user host ports
    user=$(id -un)
    host=$(hostname -s)
    mapfile -t ports < <(free_ports 2)
    mkdir -p "$dir/state" "$dir/spool"
    cat >"$dir/slurm.conf" <<EOF
# A one-node SLURM cluster written by tools/slurm_local.sh (all of its files in this folder).
ClusterName=ergrid
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# No cgroups in a container: processes tracked by their parent links, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# A finished job stays visible to scontrol show job (state, exit code) for 10 minutes.
MinJobAge=600
# The configured CPUs count even where the machine has fewer.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${ER_GRID_SLURM_CPUS:-2} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds, false after SECONDS
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

node_idle() { [ "$(SLURM_CONF="$1/slurm.conf" sinfo -h -n localhost -o %t)" = idle ]; }

start() {
    local dir
    [ -n "${1:-}" ] || die "usage: $0 start DIR" 2
    command -v slurmctld >/dev/null || die "SLURM is not installed: run $0 install" 3
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    [ ! -e "$dir/slurmctld.pid" ] || die "$dir already holds a started cluster ($0 stop $dir first)" 2
    # munged's socket lives in DIR, and a UNIX socket path has at most 107 bytes.
    [ ${#dir} -lt 90 ] || die "$dir is too long a path for munge's socket (under 90 characters)" 2
    chmod 700 "$dir"
    write_conf "$dir"
    (umask 077 && head -c 1024 /dev/urandom >"$dir/munge.key")
    munged --force --socket="$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
        --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" \
        || die "munged did not start: see $dir/munged.log"
    slurmctld -f "$dir/slurm.conf" || die "slurmctld did not start: see $dir/slurmctld.log"
    slurmd -f "$dir/slurm.conf" -N localhost || die "slurmd did not start: see $dir/slurmd.log"
    wait_for 60 node_idle "$dir" \
        || die "the node did not become idle in 60 s: see $dir/slurmctld.log and $dir/slurmd.log"
    echo "export SLURM_CONF=$dir/slurm.conf"
}

stop() {
    local dir=${1:-} name pid pids=()
    [ -n "$dir" ] || die "usage: $0 stop DIR" 2
    for name in "${DAEMONS[@]}"; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        if kill -TERM "$pid" 2>/dev/null; then
            pids+=("$pid")
        fi
        rm -f "$dir/$name.pid"
    done
    for pid in "${pids[@]}"; do
        wait_for 10 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    done
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) die "usage: $0 install | start DIR | stop DIR" 2 ;;
esac
