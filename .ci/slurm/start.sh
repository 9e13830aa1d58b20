#!/usr/bin/env bash
# Start a single-node Slurm for CI (munged + slurmctld + slurmd, no systemd, no accounting) with
# two partitions, cpu (default) and gpu, over the same node and four fake GPUs, so the real
# profiles/slurm routes jobs unchanged. Idempotent: a running cluster with the same config is
# left alone; otherwise the daemons are (re)started, up to 3 tries, printing logs on failure.
# Env: SLURM_CI_DIR (state, logs; default /var/tmp/quantbench-slurm), SLURM_CI_WAIT_S (60).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${SLURM_CI_DIR:-/var/tmp/quantbench-slurm}
WAIT_S=${SLURM_CI_WAIT_S:-60}
HOST=$(hostname -s)
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { echo "slurm-ci: $*" >&2; }

install_packages() {
    local bin missing=
    for bin in munged slurmctld slurmd sinfo sbatch; do
        command -v "$bin" >/dev/null || missing=1
    done
    [ -z "$missing" ] && return 0
    log "installing slurm-wlm and munge"
    for try in 1 2 3; do
        if $SUDO apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q slurm-wlm munge >/dev/null; then
            return 0
        fi
        log "apt-get failed (try $try), retrying"
        sleep $((try * 5))
    done
    return 1
}

# Render the configs from the templates and this machine (`slurmd -C`: CPUs, topology, memory).
# Sets CHANGED=1 when /etc/slurm/slurm.conf or gres.conf differ from what is installed.
write_config() {
    local node tmp
    node=$(slurmd -C | head -n1)
    [[ $node == NodeName=* ]] || { log "unexpected 'slurmd -C' output: $node"; return 1; }
    tmp=$(mktemp -d)
    sed -e "s|@HOST@|$HOST|g" -e "s|@DIR@|$DIR|g" -e "s|@NODE@|$node|" \
        "$HERE/slurm.conf.in" >"$tmp/slurm.conf"
    sed -e "s|@HOST@|$HOST|g" "$HERE/gres.conf.in" >"$tmp/gres.conf"
    CHANGED=0
    $SUDO mkdir -p /etc/slurm "$DIR"/{ctld,spool,run,log}
    for f in slurm.conf gres.conf; do
        if ! cmp -s "$tmp/$f" "/etc/slurm/$f"; then
            $SUDO install -m 644 "$tmp/$f" "/etc/slurm/$f"
            CHANGED=1
        fi
    done
    rm -rf "$tmp"
}

start_munge() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    [ -s /etc/munge/munge.key ] || $SUDO mungekey --create --force
    $SUDO chown munge:munge /etc/munge/munge.key
    $SUDO chmod 400 /etc/munge/munge.key
    $SUDO install -d -o munge -g munge -m 755 /run/munge
    $SUDO install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
    $SUDO runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    log "munged does not answer"
    return 1
}

# Stop the Slurm daemons this script started (by their pid files).
stop_slurm() {
    local name pid
    for name in slurmd slurmctld; do
        pid=$(cat "$DIR/run/$name.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            $SUDO kill "$pid"
            for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -0 "$pid" 2>/dev/null && $SUDO kill -9 "$pid"
        fi
        $SUDO rm -f "$DIR/run/$name.pid"
    done
}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1; }

wait_idle() {
    local state=
    for _ in $(seq "$WAIT_S"); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated) return 0 ;;
            # A node drained or down from an earlier run: it is healthy again once registered.
            *drain* | down*) $SUDO scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 1
    done
    log "node $HOST not idle after ${WAIT_S}s (state: '${state:-none}')"
    return 1
}

diagnostics() {
    log "---- diagnostics"
    ps -C munged,slurmctld,slurmd -o pid,args >&2 || true
    scontrol ping >&2 || true
    sinfo -N -l >&2 || true
    scontrol show node "$HOST" >&2 || true
    for f in "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" /var/log/munge/munged.log; do
        [ -f "$f" ] && { echo "== tail $f" >&2; tail -n 25 "$f" >&2; }
    done
    log "----"
}

alive() { kill -0 "$(cat "$DIR/run/$1.pid" 2>/dev/null)" 2>/dev/null; }
running() { alive slurmctld && alive slurmd && scontrol ping 2>/dev/null | grep -q UP; }

# (`set -e` does not apply inside a function called as an `if` condition: check each step.)
start_once() {
    write_config || return 1
    start_munge || return 1
    if [ "$CHANGED" = 0 ] && running; then
        log "already running with this config"
    else
        stop_slurm
        # -c: start from a clean state; no job from an earlier run survives into this one.
        $SUDO slurmctld -c || return 1
        $SUDO slurmd -c || return 1
    fi
    wait_idle
}

install_packages || { log "could not install slurm-wlm/munge"; exit 1; }
for try in 1 2 3; do
    if start_once; then
        sinfo >&2
        log "ready: node $HOST, partitions $(sinfo -h -o %P | paste -sd, -)"
        exit 0
    fi
    log "start failed (try $try)"
    diagnostics
    stop_slurm
    sleep $((try * 2))
done
exit 1
