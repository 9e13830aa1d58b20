#!/usr/bin/env bash
# Stop the CI Slurm started by start.sh: its jobs, slurmd, slurmctld and munged (by pid files).
set -uo pipefail

DIR=${SLURM_CI_DIR:-/var/tmp/quantbench-slurm}
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# Cancel leftover jobs first so slurmd can reap their processes before it goes.
command -v scancel >/dev/null && $SUDO scancel --quiet --nodelist "$(hostname -s)" 2>/dev/null
for pidfile in "$DIR/run/slurmd.pid" "$DIR/run/slurmctld.pid" /run/munge/munged.pid; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    if kill -0 "$pid" 2>/dev/null; then
        $SUDO kill "$pid"
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && $SUDO kill -9 "$pid"
    fi
    $SUDO rm -f "$pidfile"
done
echo "slurm-ci: stopped" >&2
