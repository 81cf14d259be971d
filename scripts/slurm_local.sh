#!/usr/bin/env bash
# A real single-node Slurm cluster in a folder, for toe-pipe's Slurm tests
# and benchmark: munged, slurmctld and slurmd of Debian's packages
# (`apt-get install slurm-wlm munge`; Slurm 22.05 on Debian 12), run as
# root without systemd. Nothing outside DIR is touched.
#
#   scripts/slurm_local.sh start DIR   # prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm_local.sh stop DIR
#
# The cluster: this host as controller and compute node with 2 CPUs and two
# fake GPUs (gres.conf pointing at character devices made with mknod; jobs
# asking --gres=gpu:1 get CUDA_VISIBLE_DEVICES 0 and 1, a third waits),
# partitions `cpu` (the default) and `gpu`. No accounting database: finished
# jobs' states come from `JobCompType=jobcomp/filetxt` (DIR/jobcomp.txt).
# `batch_sched_delay=0,sched_min_interval=0` makes a trivial job take well
# under a second. Ports: SLURM_LOCAL_PORT (default 6817) and the next one.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
port=${SLURM_LOCAL_PORT:-6817}

stop() {
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if [ -s "$pidfile" ]; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
}

need() {
    command -v "$1" >/dev/null || {
        echo "$1 is missing: install Slurm and munge (Debian, Ubuntu: apt-get install -y slurm-wlm munge)" >&2
        exit 1
    }
}

case $cmd in
stop)
    stop
    exit 0
    ;;
start) ;;
*) usage ;;
esac

need munged
need slurmctld
need slurmd
need sbatch
if [ "$(id -u)" != 0 ]; then
    echo "slurmd must run as root to start jobs; run this as root" >&2
    exit 1
fi
stop

host=$(hostname -s)
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/dev"
chmod 700 "$dir/munge"

# munge: a fresh key, our own socket (slurm.conf's AuthInfo points there).
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" \
    --log-file="$dir/log/munged.log"

# Two fake GPUs: slurmd only needs device files to hand out.
for i in 0 1; do
    [ -e "$dir/dev/nvidia$i" ] || mknod -m 666 "$dir/dev/nvidia$i" c 195 "$i"
done

cat >"$dir/slurm.conf" <<EOF
ClusterName=toe-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MinJobAge=10
KillWait=2
InactiveLimit=0
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
cat >"$dir/gres.conf" <<EOF
NodeName=$host Name=gpu File=$dir/dev/nvidia[0-1]
EOF
export SLURM_CONF=$dir/slurm.conf

slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

# Up when the node is idle (a few seconds).
for _ in $(seq 100); do
    state=$(sinfo --noheader --nodes="$host" --format=%t 2>/dev/null | head -1 || true)
    case $state in
    idle*) break ;;
    esac
    sleep 0.1
done
if [ "${state:-}" != idle ]; then
    echo "the cluster did not come up (node state: ${state:-none}); logs in $dir/log" >&2
    tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop
    exit 1
fi
echo "export SLURM_CONF=$SLURM_CONF"
