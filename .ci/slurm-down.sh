#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by their pid files (never by name).
# Only daemons listed in $SL/started-by-slurm-up (written by slurm-up.sh when it
# started them) are stopped; ones that were already running are left alone.
# Idempotent: a missing pid file or a dead process is fine.
set -euo pipefail
exec </dev/null

SL=${VQPU_SLURM_DIR:-/tmp/slurm}
WAIT_S=${VQPU_SLURM_WAIT_S:-30}

stop() {  # stop NAME PIDFILE
  local name=$1 file=$2 pid
  [ -s "$file" ] || { echo "slurm-down: $name not running (no pid file)"; return 0; }
  pid=$(head -n1 "$file" | tr -dc 0-9)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "slurm-down: $name not running (stale pid file)"; rm -f "$file"; return 0
  fi
  kill -TERM "$pid"
  local deadline=$(( $(date +%s) + WAIT_S ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "slurm-down: $name ($pid) ignored SIGTERM for ${WAIT_S}s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$file"
  echo "slurm-down: stopped $name ($pid)"
}

MINE=$SL/started-by-slurm-up
mine() { grep -qx "$1" "$MINE" 2>/dev/null; }
mine slurmd && stop slurmd "$SL/slurmd.pid"
mine slurmctld && stop slurmctld "$SL/slurmctld.pid"
mine munged && stop munged /run/munge/munged.pid
rm -f "$MINE"
