#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, as plain processes (no systemd, no cgroups):
# for the Slurm tests and for trying `launcher=slurm` on a laptop. Needs root (munge and slurmd
# run as root) and Debian's packages, which `up` installs when they are missing.
#
#   scripts/slurm-local.sh up      # install if needed, start munged, slurmctld, slurmd; wait idle
#   source "$(scripts/slurm-local.sh env)"   # or: export SLURM_CONF=<dir>/slurm.conf
#   scripts/slurm-local.sh down    # cancel every job, stop the daemons, delete the state
#
# State lives in $MTBENCH_SLURM_DIR (default /tmp/mtbench-slurm). No accounting database: the
# harness reads job states from squeue and the run directories (sacct, where a cluster has it,
# only names how a vanished job ended).
set -euo pipefail
D=${MTBENCH_SLURM_DIR:-/tmp/mtbench-slurm}
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "slurm-local: $*" >&2; }

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null \
        && return
    [ "$(id -u)" = 0 ] || { say "installing ${PACKAGES[*]} needs root"; exit 1; }
    say "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null; }
}

write_conf() {
    local node cpus memory
    node=$(hostname -s)
    cpus=$(nproc)
    # slurmd -C prints what this node really has; a job asking for more memory never starts.
    memory=$( (slurmd -C 2>/dev/null || true) | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
    memory=${memory:-2048}
    cat > "$D/slurm.conf" <<CONF
ClusterName=mtbench
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket.2,cred_expire=5
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=300
KillWait=10
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
}

wait_for() {  # wait_for <seconds> <what> <command...>
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$((seconds * 2))"); do
        "$@" >/dev/null 2>&1 && return
        sleep 0.5
    done
    say "$what did not come up in ${seconds}s; logs in $D/log"
    exit 1
}

node_idle() { sinfo -h -o %T | grep -qx idle; }

up() {
    if [ -f "$D/slurm.conf" ] && SLURM_CONF=$D/slurm.conf sinfo -h >/dev/null 2>&1; then
        say "already up: export SLURM_CONF=$D/slurm.conf"
        return
    fi
    install_packages
    [ -d "$D" ] && down  # what a half-finished earlier `up` left, by its pid files
    mkdir -p "$D/munge" "$D/state" "$D/spool" "$D/log"
    chmod 755 "$D" "$D/munge"  # munged refuses a socket folder that others cannot traverse
    mungekey -c -k "$D/munge/munge.key" >/dev/null 2>&1
    munged -S "$D/munge/munge.socket.2" --key-file="$D/munge/munge.key" \
        --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
        --seed-file="$D/munge/munged.seed"
    write_conf
    export SLURM_CONF=$D/slurm.conf
    echo "export SLURM_CONF=$D/slurm.conf" > "$D/env.sh"
    slurmctld -i
    slurmd
    wait_for 60 "the node" node_idle
    say "up: export SLURM_CONF=$D/slurm.conf"
}

stop_pid_file() {  # by the pid its daemon wrote, never by name
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    [ -d "$D" ] || { say "not up"; return; }
    if [ -f "$D/slurm.conf" ]; then
        export SLURM_CONF=$D/slurm.conf
        scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    stop_pid_file "$D/slurmd.pid"
    stop_pid_file "$D/slurmctld.pid"
    stop_pid_file "$D/munge/munged.pid"
    rm -rf "$D"
    say "down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "$D/env.sh" ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
