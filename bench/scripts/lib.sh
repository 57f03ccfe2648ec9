# lib.sh: helpers shared by the benchmark scripts (sourced, not run).
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
    echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
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
