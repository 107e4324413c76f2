#!/usr/bin/env bash
# A single-node SLURM (slurmctld + slurmd + munged) on this machine, for CI, tests and trying the slurm kind
# on a laptop. No systemd needed: every daemon is started by hand and stopped by its PID.
#
#   deploy/slurm/single-node.sh start DIR   # install slurm-wlm and munge if missing, start, wait until a job runs
#   deploy/slurm/single-node.sh stop DIR    # stop the daemons started in DIR (by PID)
#   export SLURM_CONF=DIR/slurm.conf        # what sbatch, squeue, srun need (start prints it)
#
# DIR holds slurm.conf, the state, spool, logs and PID files. Root is needed (munged runs as the munge user,
# slurmd as root).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
conf=$dir/slurm.conf

install_if_missing() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge (apt-get)" >&2
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
    fi
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat > "$conf" <<CONF
ClusterName=survey-scale-local
SlurmctldHost=localhost
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    if [ -S /run/munge/munge.socket.2 ] && munge -n >/dev/null 2>&1; then
        return  # a munged is running already (e.g. the system's)
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$dir/munged.pid"
}

wait_for_node() {
    local i
    for i in $(seq 1 120); do
        if SLURM_CONF=$conf timeout 20 srun -N1 -n1 -t 1 true >/dev/null 2>&1; then
            echo "SLURM up after ${i} tries: export SLURM_CONF=$conf" >&2
            return 0
        fi
        sleep 1
    done
    echo "SLURM did not run a job within 2 minutes; logs in $dir/log" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    return 1
}

stop_pid() {
    local file=$1 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

case $action in
    start)
        install_if_missing
        write_conf
        start_munge
        slurmctld -f "$conf"
        slurmd -f "$conf" -N localhost
        wait_for_node
        echo "export SLURM_CONF=$conf"
        ;;
    stop)
        stop_pid "$dir/slurmd.pid"
        stop_pid "$dir/slurmctld.pid"
        stop_pid "$dir/munged.pid"
        ;;
    status)
        SLURM_CONF=$conf sinfo
        ;;
    *) usage ;;
esac
