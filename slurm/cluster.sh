#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2119,SC2120 # template values are read indirectly (${!key}) by render()
# A real one-node SLURM cluster on localhost, for tests and CI (Debian 12, slurm-wlm 22.05, run as root).
#
#   bash slurm/cluster.sh install   # apt-get install the daemons when missing (idempotent, quiet)
#   bash slurm/cluster.sh up        # install if needed, render configs, start munge, mariadb, slurmdbd,
#                                   # slurmctld, slurmd; wait until the node is idle and sacct answers
#   bash slurm/cluster.sh status    # which daemons are up, and sinfo
#   bash slurm/cluster.sh down      # cancel jobs, stop ONLY the daemons this script started (by pid file)
#
# Environment:
#   QBENCH_SLURM_STATE            state dir (configs, pid files, logs, spool, mariadb datadir);
#                                 default <repo>/slurm/.state (git-ignored)
#   QBENCH_SLURM_PORT_BASE        slurmctld port; slurmd, slurmdbd and mariadb use the next three (default 6817)
#   QBENCH_SLURM_MEM_HEADROOM_MB  memory kept back from RealMemory (default: 5 % clamped to 512..4096 MB)
#
# Config location: the daemons get SLURM_CONF=<state>/etc/slurm.conf, and /etc/slurm/slurm.conf is made a
# symlink to that file, so plain `sbatch`/`sacct`/`squeue` run by submitit from any process find the
# cluster without SLURM_CONF set. A pre-existing regular /etc/slurm/slurm.conf is kept as
# slurm.conf.qbench-orig. See slurm/README.md.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_TEMPLATES="$SCRIPT_DIR/conf"
STATE="$(realpath -m "${QBENCH_SLURM_STATE:-$SCRIPT_DIR/.state}")"
PORT_BASE="${QBENCH_SLURM_PORT_BASE:-6817}"
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
CLUSTER=qbench
PARTITION=debug
MAX_ARRAY_SIZE=1001
DEF_MEM_PER_CPU=1024
DB_USER=slurm
DB_PASS=qbench-local
HOST="$(hostname -s)"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

ETC="$STATE/etc"
RUN="$STATE/run"
LOGD="$STATE/log"
SLURM_CONF_FILE="$ETC/slurm.conf"
export SLURM_CONF="$SLURM_CONF_FILE"

DB_SOCK="$RUN/mariadb.sock"
if ((${#DB_SOCK} > 100)); then # unix socket paths are limited to 108 bytes
    DB_SOCK="/tmp/qbench-mariadb-$(printf '%s' "$STATE" | md5sum | cut -c1-8).sock"
fi

log() { echo "[cluster.sh] $*"; }
die() {
    echo "[cluster.sh] ERROR: $*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Print the last lines of a log file to stderr (used on failures).
tail_log() {
    local f=$1 n=${2:-15}
    if [[ -r $f ]]; then
        echo "----- last $n lines of $f -----" >&2
        tail -n "$n" "$f" >&2 || true
    fi
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons); uid is $(id -u)"
}

# --------------------------------------------------------------------------------------------------------
# Process helpers. A zombie still answers `kill -0`, so liveness is read from /proc/PID/status.
# --------------------------------------------------------------------------------------------------------
pid_alive() {
    local pid=$1 st
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    st=$(awk '/^State:/ { print $2; exit }' "/proc/$pid/status" 2>/dev/null) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

# pid_from_file FILE EXPECTED_COMM: print the PID recorded in FILE if that process is alive and its
# /proc/PID/comm is EXPECTED_COMM (guards against a recycled PID); return 1 otherwise.
pid_from_file() {
    local file=$1 comm=$2 pid
    [[ -r $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    pid_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    echo "$pid"
}

# Daemon table: name -> (pid file, process name).
pidfile_of() {
    case $1 in
    munged) echo "$RUN/munged.pid" ;;
    mariadbd) echo "$RUN/mariadb.pid" ;;
    slurmdbd) echo "$RUN/slurmdbd.pid" ;;
    slurmctld) echo "$RUN/slurmctld.pid" ;;
    slurmd) echo "$RUN/slurmd.pid" ;;
    esac
}
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

daemon_pid() { pid_from_file "$(pidfile_of "$1")" "$1"; }

# wait_for SECONDS DESCRIPTION CMD...: retry CMD every 0.2 s until it succeeds or SECONDS pass.
# With WAIT_GUARD=<daemon name> it gives up at once when that daemon's pid file names a dead process,
# and with WAIT_GUARD_PID=<pid> when that process is gone (a daemon that died on start-up).
WAIT_GUARD=""
WAIT_GUARD_PID=""
wait_for() {
    local limit=$1 what=$2 t0 pf
    shift 2
    t0=$(now)
    until "$@" >/dev/null 2>&1; do
        if [[ -n $WAIT_GUARD_PID ]] && ! pid_alive "$WAIT_GUARD_PID"; then
            echo "[cluster.sh] ERROR: process $WAIT_GUARD_PID exited while waiting for $what" >&2
            return 1
        fi
        if [[ -n $WAIT_GUARD ]]; then
            pf=$(pidfile_of "$WAIT_GUARD")
            if [[ -s $pf ]] && ! daemon_pid "$WAIT_GUARD" >/dev/null; then
                echo "[cluster.sh] ERROR: $WAIT_GUARD exited while waiting for $what" >&2
                return 1
            fi
        fi
        if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            echo "[cluster.sh] ERROR: timed out after ${limit}s waiting for $what" >&2
            return 1
        fi
        sleep 0.2
    done
}

stop_daemon() {
    local name=$1 pidfile pid i
    pidfile=$(pidfile_of "$name")
    if ! pid=$(pid_from_file "$pidfile" "$name"); then
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do # 30 s
        pid_alive "$pid" || break
        sleep 0.2
    done
    if pid_alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.2
        done
    fi
    rm -f "$pidfile"
    log "stopped $name (pid $pid)"
}

# --------------------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------------------
missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

cmd_install() {
    local missing t0 ilog made_policy=0
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} == 0)) && return 0
    require_root
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    mkdir -p "$LOGD"
    ilog="$LOGD/install.log"
    t0=$(now)
    log "installing ${missing[*]} (log: $ilog)"
    # No init system here: keep package scripts from trying to start the services (we start them by hand).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${PACKAGES[@]}"
    } >"$ilog" 2>&1 || rc=$?
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)); then
        tail_log "$ilog" 20
        die "apt-get install failed (rc=$rc)"
    fi
    log "installed in $(elapsed "$t0") s"
}

# --------------------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------------------
node_line() {
    local line mem headroom
    line=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=') || die "slurmd -C printed no NodeName line"
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
    [[ -n $mem ]] || die "no RealMemory in: $line"
    if [[ -n ${QBENCH_SLURM_MEM_HEADROOM_MB:-} ]]; then
        headroom=$QBENCH_SLURM_MEM_HEADROOM_MB
    else
        headroom=$((mem / 20))
        ((headroom < 512)) && headroom=512
        ((headroom > 4096)) && headroom=4096
    fi
    ((mem - headroom >= 256)) || die "too little memory for a node: RealMemory=$mem, headroom=$headroom"
    line=$(sed -e "s/RealMemory=[0-9]*/RealMemory=$((mem - headroom))/" -e "s/^NodeName=[^ ]*/NodeName=$HOST/" <<<"$line")
    echo "$line NodeAddr=127.0.0.1 State=UNKNOWN"
}

# render TEMPLATE DEST MODE: substitute @NAME@ placeholders; returns 0 if DEST changed.
render() {
    local tpl=$1 dest=$2 mode=$3 tmp content key
    content=$(<"$tpl")
    for key in CLUSTER HOST STATE CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT DB_USER DB_PASS PARTITION \
        MAX_ARRAY_SIZE DEF_MEM_PER_CPU NODE_LINE; do
        content=${content//@$key@/${!key}}
    done
    if grep -q '@[A-Z_]*@' <<<"$content"; then
        die "unfilled placeholder in $tpl: $(grep -o '@[A-Z_]*@' <<<"$content" | head -1)"
    fi
    tmp="$dest.tmp.$$"
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$dest"
    return 0
}

write_configs() {
    local changed=0
    mkdir -p "$ETC" "$RUN" "$LOGD" "$STATE/spool/slurmctld" "$STATE/spool/slurmd"
    NODE_LINE=$(node_line)
    render "$CONF_TEMPLATES/slurm.conf.in" "$ETC/slurm.conf" 644 && changed=1
    render "$CONF_TEMPLATES/cgroup.conf.in" "$ETC/cgroup.conf" 644 && changed=1
    render "$CONF_TEMPLATES/slurmdbd.conf.in" "$ETC/slurmdbd.conf" 600 && changed=1
    if ((changed)) && daemon_pid slurmctld >/dev/null; then
        log "WARNING: configs changed while the cluster runs; run 'down' then 'up' to apply them"
    fi
}

# --------------------------------------------------------------------------------------------------------
# daemons
# --------------------------------------------------------------------------------------------------------
munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if pid=$(daemon_pid munged); then
        log "munged already up (pid $pid)"
        return
    fi
    if munge_works; then
        log "munged already running, not started by this script: using it, will not stop it"
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    # munged drops nothing: it must start as the munge user, so its own pid file lives in /run/munge;
    # the PID is copied into the state dir, which is what `down` trusts.
    rm -f /run/munge/qbench-munged.pid
    runuser -u munge -- munged --force --pid-file=/run/munge/qbench-munged.pid ||
        {
            tail_log /var/log/munge/munged.log
            die "munged failed to start"
        }
    wait_for 10 "munged pid file" test -s /run/munge/qbench-munged.pid || die "munged wrote no pid file"
    cp /run/munge/qbench-munged.pid "$RUN/munged.pid"
    wait_for 10 "munge to answer" munge_works || {
        tail_log /var/log/munge/munged.log
        die "munge does not answer"
    }
    log "started munged (pid $(daemon_pid munged))"
}

db_sql() { mariadb --no-defaults --protocol=socket --socket="$DB_SOCK" -u root -N -B "$@"; }

start_mariadb() {
    local datadir="$STATE/mysql" pid
    if pid=$(daemon_pid mariadbd); then
        log "mariadbd already up (pid $pid)"
        return
    fi
    if [[ ! -d $datadir/mysql ]]; then
        log "initialising mariadb datadir $datadir"
        rm -rf "$datadir"
        mkdir -p "$datadir"
        mariadb-install-db --no-defaults --user=root --datadir="$datadir" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOGD/mariadb-install.log" 2>&1 ||
            {
                tail_log "$LOGD/mariadb-install.log"
                die "mariadb-install-db failed"
            }
    fi
    rm -f "$RUN/mariadb.pid" "$DB_SOCK"
    # mariadbd does not daemonize: run it in its own session, detached from this shell.
    setsid mariadbd --no-defaults --user=root --datadir="$datadir" --socket="$DB_SOCK" \
        --pid-file="$RUN/mariadb.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$LOGD/mariadb.log" --skip-log-bin --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --innodb-log-file-size=48M --innodb-flush-log-at-trx-commit=2 --max-connections=64 \
        </dev/null >>"$LOGD/mariadb.log" 2>&1 &
    WAIT_GUARD_PID=$! # setsid execs mariadbd in place here (no job control), so this is mariadbd
    wait_for 60 "mariadb to answer" db_sql -e 'SELECT 1' || {
        WAIT_GUARD_PID=""
        tail_log "$LOGD/mariadb.log"
        die "mariadb did not start"
    }
    WAIT_GUARD_PID=""
    wait_for 10 "mariadb pid file" daemon_pid mariadbd || die "mariadbd wrote no usable pid file"
    db_sql <<SQL
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
    log "started mariadbd (pid $(daemon_pid mariadbd), 127.0.0.1:$DB_PORT)"
}

sacctmgr_answers() { sacctmgr -n -P list cluster format=cluster; }

start_slurmdbd() {
    local pid
    if pid=$(daemon_pid slurmdbd); then
        log "slurmdbd already up (pid $pid)"
    else
        rm -f "$RUN/slurmdbd.pid"
        slurmdbd >>"$LOGD/slurmdbd.log" 2>&1 || {
            tail_log "$LOGD/slurmdbd.log"
            die "slurmdbd failed to start"
        }
        WAIT_GUARD=slurmdbd wait_for 60 "slurmdbd to answer" sacctmgr_answers || {
            tail_log "$LOGD/slurmdbd.log"
            die "slurmdbd does not answer"
        }
        log "started slurmdbd (pid $(daemon_pid slurmdbd))"
    fi
    if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
        log "registered cluster '$CLUSTER' with slurmdbd"
    fi
}

start_slurmctld() {
    local pid
    if pid=$(daemon_pid slurmctld); then
        log "slurmctld already up (pid $pid)"
        return
    fi
    rm -f "$RUN/slurmctld.pid"
    slurmctld >>"$LOGD/slurmctld.log" 2>&1 || {
        tail_log "$LOGD/slurmctld.log"
        die "slurmctld failed to start"
    }
    WAIT_GUARD=slurmctld wait_for 30 "slurmctld to answer" sinfo -h || {
        tail_log "$LOGD/slurmctld.log"
        die "slurmctld does not answer"
    }
    log "started slurmctld (pid $(daemon_pid slurmctld))"
}

node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -1; }
node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

start_slurmd() {
    local pid
    if pid=$(daemon_pid slurmd); then
        log "slurmd already up (pid $pid)"
    else
        rm -f "$RUN/slurmd.pid"
        slurmd >>"$LOGD/slurmd.log" 2>&1 || {
            tail_log "$LOGD/slurmd.log"
            die "slurmd failed to start"
        }
        wait_for 10 "slurmd pid file" daemon_pid slurmd || {
            tail_log "$LOGD/slurmd.log"
            die "slurmd exited after start"
        }
        log "started slurmd (pid $(daemon_pid slurmd))"
    fi
    if ! wait_for 15 "node $HOST to become idle" node_usable; then
        # A node left DOWN/DRAIN by an earlier unclean stop: resume it once.
        log "node state is '$(node_state)'; resuming it"
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        wait_for 15 "node $HOST to become idle" node_usable || {
            sinfo -N -l >&2 || true
            tail_log "$LOGD/slurmd.log"
            tail_log "$LOGD/slurmctld.log"
            die "node $HOST is '$(node_state)', not idle"
        }
    fi
}

# Plain sbatch/sacct (e.g. run by submitit) read /etc/slurm/slurm.conf: point it at ours. Done only once
# the cluster is up, so a failed `up` from another state dir does not hijack a running cluster's clients.
link_etc_conf() {
    local f
    mkdir -p /etc/slurm
    for f in slurm.conf cgroup.conf; do
        if [[ -f /etc/slurm/$f && ! -L /etc/slurm/$f && ! -e /etc/slurm/$f.qbench-orig ]]; then
            mv "/etc/slurm/$f" "/etc/slurm/$f.qbench-orig"
        fi
        ln -sfn "$ETC/$f" "/etc/slurm/$f"
    done
}

cmd_up() {
    local t0
    t0=$(now)
    require_root
    cmd_install
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    wait_for 30 "sacct to answer" sacct -n -X -S now-1minutes || {
        tail_log "$LOGD/slurmdbd.log"
        die "sacct does not answer"
    }
    link_etc_conf
    log "cluster '$CLUSTER' up in $(elapsed "$t0") s: partition $PARTITION, node $HOST ($(node_state))," \
        "state dir $STATE, SLURM_CONF=$SLURM_CONF_FILE (also /etc/slurm/slurm.conf)"
}

cmd_down() {
    local t0 jobs i
    t0=$(now)
    if daemon_pid slurmctld >/dev/null; then
        jobs=$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ') || jobs=""
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do # 20 s
                [[ -z $(squeue -h -o '%A' 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    local d
    for d in slurmd slurmctld slurmdbd mariadbd munged; do
        stop_daemon "$d"
    done
    [[ $DB_SOCK == /tmp/* ]] && rm -f "$DB_SOCK"
    log "down in $(elapsed "$t0") s"
}

cmd_status() {
    local d pid all=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then
            printf '%-10s up (pid %s)\n' "$d" "$pid"
        elif [[ $d == munged ]] && munge_works; then
            printf '%-10s up (not started by cluster.sh)\n' "$d"
        else
            printf '%-10s down\n' "$d"
            all=1
        fi
    done
    echo "state dir: $STATE"
    if daemon_pid slurmctld >/dev/null; then
        sinfo || true
    fi
    return $all
}

case "${1:-}" in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: $0 up|down|status|install" >&2
    exit 2
    ;;
esac
