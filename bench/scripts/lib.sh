# lib.sh: helpers shared by the benchmark scripts (sourced, not run).
# shellcheck shell=bash disable=SC2034 # variables here are used by the scripts that source it
#
# Everything here stays on 127.0.0.1 and stops only processes the calling script started.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RESULTS_DIR="$REPO_ROOT/bench/results"
LOAD="$REPO_ROOT/target/release/ringmail-load"
# RINGMAIL may point at another build; then it is not rebuilt.
RINGMAIL_PREBUILT=${RINGMAIL:+1}
RINGMAIL=${RINGMAIL:-$REPO_ROOT/target/release/ringmail}

# Every measured run holds this lock, so two engineers' measurements on one host never overlap.
# Builds and setup do not take it. Do not wrap a script that takes it in flock yourself: the
# inner flock would wait for the outer one forever.
BENCH_LOCK=${BENCH_LOCK:-/tmp/ringmail-bench.lock}

# Takes the benchmark lock (waits for it); bench_unlock gives it back.
bench_lock() {
    exec {BENCH_LOCK_FD}>>"$BENCH_LOCK"
    flock "$BENCH_LOCK_FD"
}
bench_unlock() { exec {BENCH_LOCK_FD}>&-; }

# PIDs this script started; cleanup kills exactly these.
STARTED_PIDS=()

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A free high TCP port on 127.0.0.1 (not currently listening; another process could still take
# it before we bind, which the wait_listening timeout would then reveal).
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$(( 20000 + RANDOM % 20000 ))
        if [ -z "$(ss -Htln "sport = :$port" 2>/dev/null)" ]; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# Waits until something listens on 127.0.0.1:PORT, without connecting to it. Fails if PID dies.
wait_listening() {
    local port=$1 pid=$2 what=$3
    for _ in $(seq 1 300); do
        if [ -n "$(ss -Htln "sport = :$port" 2>/dev/null)" ]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { log "$what exited before listening on :$port"; return 1; }
        sleep 0.1
    done
    log "$what is not listening on :$port after 30 s"
    return 1
}

# Starts "$@" in the background with output to LOGFILE; sets STARTED_PID.
start_bg() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
}

# Stops one PID we started (TERM, then KILL after 5 s).
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    STARTED_PIDS=()
}

build_load() {
    log "building ringmail-load (release)"
    (cd "$REPO_ROOT" && cargo build --release -q -p ringmail-bench --bin ringmail-load)
}

build_ringmail() {
    [ -n "$RINGMAIL_PREBUILT" ] && { log "using prebuilt $RINGMAIL"; return 0; }
    log "building ringmail (release)"
    (cd "$REPO_ROOT" && cargo build --release -q -p ringmail --bin ringmail)
}

# Value of KEY in a `RESULT ... key=value ...` line.
result_field() {
    local line=$1 key=$2
    tr ' ' '\n' <<<"$line" | sed -n "s/^$key=//p" | head -n1
}

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# Markdown lines describing this host.
host_info() {
    echo "- host: \`$(uname -srm)\`, $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- filesystem of the work dir: \`$(df -T "${WORK:-/tmp}" | awk 'NR==2 {print $2 " on " $1}')\`, mount options \`$(findmnt -no OPTIONS -T "${WORK:-/tmp}" 2>/dev/null || echo unknown)\`"
    if [ -n "$RINGMAIL_PREBUILT" ]; then
        echo "- ringmail binary: \`$RINGMAIL\` (prebuilt, not this checkout's commit)"
    else
        echo "- ringmail commit: \`$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git -C "$REPO_ROOT" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    fi
    # LOADAVG_BEFORE: what a script saw when it started (host_info runs when it reports).
    echo "- load average before the run: ${LOADAVG_BEFORE:-$(cut -d' ' -f1-3 /proc/loadavg)}"
}

# === Postfix from Debian (smtp-sink, and Postfix itself as a relay) ===
SINK=/usr/sbin/smtp-sink
# Installs Debian's postfix package if smtp-sink is missing, without configuring or starting a
# system Postfix: debconf "No configuration", and a policy-rc.d that forbids starting services
# for the length of the install. Sets POSTFIX_INSTALLED_NOW=1 when it installed the package.
POSTFIX_INSTALLED_NOW=0
ensure_smtp_sink() {
    [ -x "$SINK" ] && [ -x /usr/sbin/postfix ] && return 0
    log "installing postfix (for smtp-sink; the system Postfix is not started)"
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix || true
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    POSTFIX_INSTALLED_NOW=1
    [ -x "$SINK" ]
}

postfix_version() { dpkg-query -W -f '${Version}' postfix 2>/dev/null || echo '?'; }

# The newest message count that `smtp-sink -c` (stdout sent to FILE) has written: records look
# like `sess=S quit=Q mesg=M\r`; 0 before the first.
sink_count() {
    local n
    n=$(tail -c 512 "$1" 2>/dev/null | tr '\r' '\n' | sed -n 's/.* m\(e\)\{0,1\}sg=\([0-9][0-9]*\)$/\2/p' | tail -n1)
    echo "${n:-0}"
}

# A results file name that does not overwrite an earlier run of the same day.
results_file() {
    local stem=$1 day
    day=$(date -u +%Y-%m-%d)
    mkdir -p "$RESULTS_DIR"
    if [ -e "$RESULTS_DIR/$stem-$day.md" ]; then
        echo "$RESULTS_DIR/$stem-$day-$(date -u +%H%M%S).md"
    else
        echo "$RESULTS_DIR/$stem-$day.md"
    fi
}

# === ringmail config: the one place to adjust when ringmail's config format changes ===
# write_ringmail_config FILE DATA_DIR MAIL_ROOT SMTP_PORT POP3_PORT
# Loopback only; any user at example.test is accepted and delivered to
# MAIL_ROOT/example.test/<user>/Maildir; POP3 takes plaintext passwords (a test rig).
# RINGMAIL_LOG_LEVEL (warn) sets the log level: at info ringmail logs ~3 lines per message.
# give_to_ringmail_user DIR...: started as root, ringmail runs as its server.user (nobody here,
# as Dovecot does in these runs) and needs its data directory and mail root; hand them over.
give_to_ringmail_user() {
    [ "$(id -u)" = 0 ] || return 0
    local user=${RINGMAIL_USER:-nobody}
    chown -R "$user:$(id -gn "$user")" "$@"
}

write_ringmail_config() {
    local conf=$1 data_dir=$2 mail_root=$3 smtp_port=$4 pop3_port=$5
    cat >"$conf" <<CONF
[server]
hostname = "bench.test"
data_dir = "$data_dir"
log_level = "${RINGMAIL_LOG_LEVEL:-warn}"
user = "${RINGMAIL_USER:-nobody}"

[local]
domains = ["example.test"]
mail_root = "$mail_root"

[pop3]
listen = ["127.0.0.1:$pop3_port"]
allow_plaintext_auth = "always"

[smtp]
listen = ["127.0.0.1:$smtp_port"]
CONF
}

# write_ringmail_relay_config FILE DATA_DIR SMTP_PORT SINK_PORT [CONNECTIONS]
# ringmail as a relay for the relay benchmark: loopback clients may relay anywhere, every domain
# is routed to the smtp-sink on 127.0.0.1:SINK_PORT with at most CONNECTIONS (20) connections,
# nothing is local but its own name, and the resolver points at a dead loopback port (never the
# system resolver; a static route to an IP needs no lookup).
write_ringmail_relay_config() {
    local conf=$1 data_dir=$2 smtp_port=$3 sink_port=$4 conns=${5:-20}
    cat >"$conf" <<CONF
[server]
hostname = "ringmail-relay.test"
data_dir = "$data_dir"
log_level = "${RINGMAIL_LOG_LEVEL:-warn}"
user = "${RINGMAIL_USER:-nobody}"

[smtp]
listen = ["127.0.0.1:$smtp_port"]
relay_networks = ["127.0.0.0/8"]

[local]
domains = ["ringmail-relay.test"]

[dns]
nameservers = ["127.0.0.1:9"]

[relay]
routes = { "*" = "127.0.0.1:$sink_port" }
max_connections_per_destination = $conns
CONF
}
