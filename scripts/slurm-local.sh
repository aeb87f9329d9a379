#!/usr/bin/env bash
# A real single-node Slurm on this machine, for testing the workflow's Slurm profile
# (tests/test_slurm.py). Debian packages (slurmctld, slurmd, slurm-client, munge); no systemd,
# no cgroups, no accounting database: the controller writes a job completion log instead
# (jobcomp/filetxt), which the test reads to prove that the jobs ran through Slurm.
#
#   scripts/slurm-local.sh install   # apt-get install the packages (root; ~25 s)
#   scripts/slurm-local.sh start     # write /etc/slurm/slurm.conf + gres.conf, start munged, slurmctld, slurmd
#   scripts/slurm-local.sh reconfigure  # rewrite the configuration, reload it in the running daemons
#   scripts/slurm-local.sh status    # sinfo
#   scripts/slurm-local.sh stop      # stop the daemons started by `start` (by the PIDs it recorded)
#
# Partitions: `debug` (default) and `gpu`, both on this node; the node has one fake GPU
# (GRES gpu:1 backed by /dev/null: --gres=gpu:1 / --gpus=1 jobs schedule and see
# CUDA_VISIBLE_DEVICES=0, but there is no GPU to compute on).
# State, logs, the PID file and the job completion log live in $SLURM_LOCAL_DIR (default /tmp/osmlulc-slurm).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/osmlulc-slurm}
PIDS=$DIR/pids
CONF_DIR=/etc/slurm
NODE=$(hostname -s)

log() { echo "slurm-local: $*" >&2; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        log "Slurm and munge are installed"
        return 0
    fi
    [ "$(id -u)" = 0 ] || { log "install needs root (apt-get)"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
    log "installed $(slurmctld -V)"
}

write_config() {
    mkdir -p "$DIR"/{state,spool,log} "$CONF_DIR"
    # The node's CPUs and memory as slurmd sees them; memory a little below the real value.
    local cpus mem
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    mem=$((mem * 9 / 10))
    # Slurm jobs of a workflow mostly wait (snakemake's start-up inside the job, I/O): offer more
    # CPUs than there are (config_overrides lets slurmd accept it) so that several run at once.
    cpus=$((cpus * ${SLURM_LOCAL_CPU_FACTOR:-4}))
    cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by osmlulc scripts/slurm-local.sh: a single-node test cluster.
ClusterName=osmlulc-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
# Records the GPUs Slurm gave each job (the job completion log has no GRES).
Prolog=$DIR/prolog.sh
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# Finished jobs stay visible to squeue (the plugin's status command without sacct) for 10 minutes.
MinJobAge=600
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/prolog.sh" <<EOF
#!/bin/sh
echo "JobId=\$SLURM_JOB_ID Partition=\$SLURM_JOB_PARTITION Gpus=\${SLURM_JOB_GPUS:-none}" >>"$DIR/prolog.log"
EOF
    chmod +x "$DIR/prolog.sh"
    # Without File= slurmd drops the GPU and the node drains; /dev/null stands in for /dev/nvidia0.
    cat >"$CONF_DIR/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu Count=1 File=/dev/null
EOF
}

start_munge() {
    [ -f /etc/munge/munge.key ] || mungekey --create
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key
    chmod 0755 /run/munge
    # setpriv execs munged as the munge user (no forking wrapper), so $! is munged's own PID.
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F >"$DIR/log/munged.out" 2>&1 &
    echo "munged $!" >>"$PIDS"
}

start() {
    install
    if [ -f "$PIDS" ]; then
        log "already started ($PIDS exists); run stop first"
        exit 1
    fi
    write_config
    : >"$PIDS"
    start_munge
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
    slurmctld -D -i >"$DIR/log/slurmctld.out" 2>&1 &
    echo "slurmctld $!" >>"$PIDS"
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    slurmd -D >"$DIR/log/slurmd.out" 2>&1 &
    echo "slurmd $!" >>"$PIDS"
    for _ in $(seq 200); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)
        case "$state" in idle*|mixed*|allocated*) break ;; esac
        sleep 0.1
    done
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)
    case "$state" in
        idle*|mixed*|allocated*) log "node $NODE is $state; partitions: $(sinfo -h -o %P | tr '\n' ' ')" ;;
        *) log "node $NODE did not come up (state '$state'); see $DIR/log/"; stop; exit 1 ;;
    esac
}

stop() {
    [ -f "$PIDS" ] || { log "not started (no $PIDS)"; return 0; }
    # Reverse start order: slurmd, slurmctld, munged; only the PIDs recorded by start.
    tac "$PIDS" | while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            log "stopped $name ($pid)"
        fi
    done
    rm -f "$PIDS"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    reconfigure) write_config; scontrol reconfigure ;;
    status) sinfo ;;
    *) echo "usage: $0 install|start|reconfigure|status|stop" >&2; exit 2 ;;
esac
