#!/usr/bin/env bash
# Start a single-node Slurm (munged + slurmctld + slurmd) on this machine, as root.
#
# Idempotent: daemons already running from an earlier invocation (pid file and
# a live process) are left alone. Needs no stdin, no systemd; works under CI=true.
# Stop with .ci/slurm-down.sh, which stops only what the pid files name.
#
# Knobs (environment):
#   VQPU_SLURM_DIR      state/spool/log/pid directory    (default /tmp/slurm)
#   VQPU_SLURM_MEM_MB   RealMemory of the node in MB     (default: min(4000, 80% of RAM))
#   VQPU_SLURM_WAIT_S   how long to wait for the node    (default 60)
set -euo pipefail
exec </dev/null

SL=${VQPU_SLURM_DIR:-/tmp/slurm}
WAIT_S=${VQPU_SLURM_WAIT_S:-60}
CONF=/etc/slurm/slurm.conf
MUNGE_PID=/run/munge/munged.pid
MINE=$SL/started-by-slurm-up   # the daemons this script started; slurm-down.sh stops only these

die() { echo "slurm-up: $*" >&2; exit 1; }
# Two concurrent callers (parallel test sessions) must not both start daemons.
if command -v flock >/dev/null 2>&1; then exec 9>"$SL.lock"; flock -w 120 9 || die "could not lock $SL.lock"; fi
[ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"
for b in mungekey munged slurmctld slurmd sinfo; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die "$b is not installed (apt-get install slurmctld slurmd slurm-client munge)"
done

alive() {  # alive PIDFILE: the pid file names a live process
  [ -s "$1" ] || return 1
  local pid; pid=$(head -n1 "$1" 2>/dev/null | tr -dc 0-9)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# ---------------------------------------------------------------- munge
[ -s /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! alive "$MUNGE_PID"; then
  rm -f "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged 9>&-
  started_munge=1
fi

# ---------------------------------------------------------------- slurm.conf
install -d -o slurm -g slurm "$SL" "$SL/state" "$SL/spool" "$SL/log"
mark() { grep -qx "$1" "$MINE" 2>/dev/null || echo "$1" >>"$MINE"; }
[ "${started_munge:-0}" = 1 ] && mark munged
CPUS=$(nproc)
if [ -n "${VQPU_SLURM_MEM_MB:-}" ]; then
  MEM=$VQPU_SLURM_MEM_MB
else
  total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  MEM=$(( total * 8 / 10 )); [ "$MEM" -gt 4000 ] && MEM=4000
fi
install -d -m 0755 /etc/slurm
tmp=$(mktemp /etc/slurm/.slurm.conf.XXXXXX)
cat >"$tmp" <<EOF
# Written by jupyter-vqpu .ci/slurm-up.sh: a single-node test cluster.
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
OverTimeLimit=0
KillWait=5
SchedulerParameters=batch_sched_delay=0,sched_interval=2
StateSaveLocation=$SL/state
SlurmdSpoolDir=$SL/spool
SlurmctldPidFile=$SL/slurmctld.pid
SlurmdPidFile=$SL/slurmd.pid
SlurmctldLogFile=$SL/log/slurmctld.log
SlurmdLogFile=$SL/log/slurmd.log
NodeName=localhost CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
chmod 0644 "$tmp"
changed=0
if cmp -s "$tmp" "$CONF"; then rm -f "$tmp"; else mv -f "$tmp" "$CONF"; changed=1; fi

# ---------------------------------------------------------------- daemons
started="${started_munge:+ munged}"
if alive "$SL/slurmctld.pid"; then
  [ "$changed" = 1 ] && scontrol reconfigure >/dev/null 2>&1 || true
else
  rm -f "$SL/slurmctld.pid"
  /usr/sbin/slurmctld -i 9>&-
  mark slurmctld; started="$started slurmctld"
fi
if ! alive "$SL/slurmd.pid"; then
  rm -f "$SL/slurmd.pid"
  /usr/sbin/slurmd -N localhost 9>&-        # the machine's hostname is not "localhost"
  mark slurmd; started="$started slurmd"
fi

# ---------------------------------------------------------------- wait for the node
deadline=$(( $(date +%s) + WAIT_S ))
state=""
while :; do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n1 || true)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    drain*|down*)
      # a node left down by an earlier run: return it to service
      scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
  esac
  [ "$(date +%s)" -lt "$deadline" ] || die "node not idle after ${WAIT_S}s (state '${state:-no answer}'); see $SL/log"
  sleep 0.2
done
echo "slurm-up: node localhost ${state} (CPUs=$CPUS RealMemory=${MEM}MB), started:${started:- nothing (already running)}; logs in $SL/log"
