#!/usr/bin/env bash
# shaping_relay.sh: relay throughput to many destination domains, each under its own traffic
# shaping limits, against the same load with no shaping at all, in one run.
#
# A loopback DNS server (tests/support/dns_server.py, dnslib) serves an MX record for each of
# DOMAINS domains (d1.test ... dN.test), every MX host resolving to 127.0.0.1, where Postfix's
# `smtp-sink` (accepts and discards) listens on the relay port. ringmail relays the load of
# `ringmail-load smtp` (SESSIONS sessions, 1 KB, one recipient, `u{n}@d{n}.test` cycling over the
# domains) to it, in two configurations:
#   shaped    one `[relay.shaping."dN.test"]` table per domain (max_connections, a per-second
#             rate, max_messages_per_connection): DOMAINS keys, each owned by one shard, each
#             with its own connection count and GCRA limiter; every job also takes the MX
#             rollup's classification path (an MX lookup at the origin shard, then its cache);
#   unshaped  the same relay without any shaping table (built-in provider rules only, which
#             match none of these domains).
# Per round both run, shaped first in odd rounds and unshaped first in even ones. With the
# defaults the per-domain limits are generous (they bound nothing at this load), so the
# difference is the cost of shaping itself; lower RATE to see the limits bind.
#
# Measured per run (as in relay_vs_postfix.sh): accepted/s at the client, relayed/s end to end
# (first message sent until smtp-sink's counter shows every accepted message).
# Writes bench/results/shaping-relay-<date>.md.
#
# Every load is bounded: each run sends at most TOTAL messages for at most LOAD_LIMIT and waits
# at most WAIT_LIMIT for the sink. Worst case for --runs 1: 2 x (LOAD_LIMIT + WAIT_LIMIT) plus
# start-ups, about 4 minutes with the defaults. Each measured run holds the benchmark lock.
#
# Usage: bench/scripts/shaping_relay.sh [--runs N]
# Environment: DOMAINS (1000) TOTAL (20000) SESSIONS (20) PER_CONNECTION (100) RATE (100: messages
#              per second per domain) CONNS (2: connections per domain) LOAD_LIMIT (60s)
#              WAIT_LIMIT (60s) PROFILE (release; "debug" for a quick smoke test of the script)
#              RINGMAIL_LOG_LEVEL (warn) KEEP_WORK (0)
# Smoke test: PROFILE=debug DOMAINS=20 TOTAL=200 bench/scripts/shaping_relay.sh --runs 1
# Needs root (apt-get install postfix for smtp-sink if missing; the system Postfix is not
# started) and python3 with dnslib (scripts/install-test-deps).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

COMMAND_LINE="bench/scripts/$(basename "$0")${*:+ $*}"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
DOMAINS=${DOMAINS:-1000}
TOTAL=${TOTAL:-20000}
SESSIONS=${SESSIONS:-20}
PER_CONNECTION=${PER_CONNECTION:-100}
RATE=${RATE:-100}
CONNS=${CONNS:-2}
LOAD_LIMIT=${LOAD_LIMIT:-60s}
WAIT_LIMIT=${WAIT_LIMIT:-60s}
PROFILE=${PROFILE:-release}
RUNS=3
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs takes a positive number"
[[ $DOMAINS =~ ^[1-9][0-9]*$ ]] || die "DOMAINS takes a positive number"

case $PROFILE in
    release) ;;
    debug)
        LOAD="$REPO_ROOT/target/debug/ringmail-load"
        if [ -z "$RINGMAIL_PREBUILT" ]; then RINGMAIL="$REPO_ROOT/target/debug/ringmail"; fi
        build_load() { log "building ringmail-load (debug)"; (cd "$REPO_ROOT" && cargo build -q -p ringmail-bench --bin ringmail-load); }
        build_ringmail() {
            [ -n "$RINGMAIL_PREBUILT" ] && return 0
            log "building ringmail (debug)"
            (cd "$REPO_ROOT" && cargo build -q -p ringmail --bin ringmail)
        }
        ;;
    *) die "PROFILE is release or debug" ;;
esac

WORK=$(mktemp -d /tmp/ringmail-shaping-bench.XXXXXX)
chmod 755 "$WORK"
SHM=$(mktemp -d /dev/shm/ringmail-shaping-sink.XXXXXX)
COUNTER=$SHM/counter
DNS_PID=
cleanup() {
    stop_all_started
    rm -rf "$SHM"
    if [ "${KEEP_WORK:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_smtp_sink || die "smtp-sink (Debian package postfix) is not available"
PYTHON=
for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import dnslib' >/dev/null 2>&1; then PYTHON=$candidate; break; fi
done
[ -n "$PYTHON" ] || die "python3 with dnslib is missing (run scripts/install-test-deps)"
build_load
build_ringmail

# --- smtp-sink: every MX host of every domain ------------------------------------------------------
SINK_PORT=$(free_port)
chown postfix "$SHM"
start_bg "$COUNTER" "$SINK" -c -u postfix "127.0.0.1:$SINK_PORT" 1024
SINK_PID=$STARTED_PID
wait_listening "$SINK_PORT" "$SINK_PID" smtp-sink || die "smtp-sink did not start"
log "smtp-sink (pid $SINK_PID) on 127.0.0.1:$SINK_PORT"

# --- DNS: DOMAINS domains, each with its own MX host -------------------------------------------------
ZONE=$WORK/bench.zone
{
    echo "test. 60 IN SOA ns.test. hostmaster.test. 1 60 60 60 60"
    for i in $(seq 1 "$DOMAINS"); do
        echo "d$i.test. 300 IN MX 10 mx.d$i.test."
        echo "mx.d$i.test. 300 IN A 127.0.0.1"
    done
} >"$ZONE"
DNS_OUT=$WORK/dns.out
# The server exits when its stdin closes: a FIFO whose only writer is this script, so it cannot
# outlive us even if the cleanup's kill were missed.
mkfifo "$WORK/dns.stdin"
exec {DNS_STDIN}<>"$WORK/dns.stdin"
"$PYTHON" "$REPO_ROOT/tests/support/dns_server.py" "$ZONE" >"$DNS_OUT" 2>"$WORK/dns.err" <"$WORK/dns.stdin" &
DNS_PID=$!
STARTED_PIDS+=("$DNS_PID")
for _ in $(seq 1 100); do
    grep -q '^READY ' "$DNS_OUT" 2>/dev/null && break
    kill -0 "$DNS_PID" 2>/dev/null || die "the DNS server exited: $(cat "$WORK/dns.err")"
    sleep 0.1
done
DNS_PORT=$(sed -n 's/^READY //p' "$DNS_OUT")
[ -n "$DNS_PORT" ] || die "the DNS server did not start"
log "DNS (pid $DNS_PID) on 127.0.0.1:$DNS_PORT, $DOMAINS domains"

# --- ringmail, shaped or not ----------------------------------------------------------------------
# write_config FILE DATA_DIR SMTP_PORT MODE
write_config() {
    local conf=$1 data_dir=$2 smtp_port=$3 mode=$4
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
nameservers = ["127.0.0.1:$DNS_PORT"]

[relay]
port = $SINK_PORT
tls = "none"
max_connections = 4000
CONF
    if [ "$mode" = shaped ]; then
        for i in $(seq 1 "$DOMAINS"); do
            printf '\n[relay.shaping."d%s.test"]\nmax_connections = %s\nmessages_per_second = %s\nmax_messages_per_connection = %s\n' \
                "$i" "$CONNS" "$RATE" "$PER_CONNECTION" >>"$conf"
        done
    fi
}

declare -A RM_PORT=() RM_PID=()
for mode in shaped unshaped; do
    port=$(free_port)
    mkdir -p "$WORK/$mode-data"
    write_config "$WORK/$mode.toml" "$WORK/$mode-data" "$port" "$mode"
    "$RINGMAIL" check-config "$WORK/$mode.toml" >/dev/null || die "$mode config refused"
    give_to_ringmail_user "$WORK/$mode-data"
    start_bg "$WORK/$mode.log" "$RINGMAIL" serve --config "$WORK/$mode.toml"
    RM_PID[$mode]=$STARTED_PID
    RM_PORT[$mode]=$port
    wait_listening "$port" "$STARTED_PID" "ringmail ($mode)" || { cat "$WORK/$mode.log" >&2; die "ringmail ($mode) did not start"; }
    log "ringmail $mode (pid $STARTED_PID) on 127.0.0.1:$port"
done

# --- runs -----------------------------------------------------------------------------------------
declare -a RUN_MODE=() RUN_SMTP=() RUN_RELAY=() RUN_CMD=()
measure() {
    local mode=$1 cmd out
    cmd="$LOAD smtp --server 127.0.0.1:${RM_PORT[$mode]} --sessions $SESSIONS --size 1024 --recipients 1 --per-connection $PER_CONNECTION --total $TOTAL --to u{n}@d{n}.test --to-spread $DOMAINS --duration-limit $LOAD_LIMIT --wait-sink $COUNTER --wait-timeout $WAIT_LIMIT"
    bench_lock
    log "run $(( ${#RUN_MODE[@]} + 1 )): $mode, $TOTAL messages to $DOMAINS domains"
    # shellcheck disable=SC2086 # the command is words
    out=$($cmd 2>"$WORK/load-errors.txt") || log "$mode: the load reported errors or a timeout"
    bench_unlock
    RUN_MODE+=("$mode")
    RUN_SMTP+=("$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed")")
    RUN_RELAY+=("$(grep '^RESULT smtp-relayed ' <<<"$out" || echo "RESULT smtp-relayed failed")")
    RUN_CMD+=("$cmd")
    log "${RUN_SMTP[-1]}"
    log "${RUN_RELAY[-1]}"
}
ORDER=()
for run in $(seq 1 "$RUNS"); do
    if (( run % 2 )); then pair=(shaped unshaped); else pair=(unshaped shaped); fi
    for mode in "${pair[@]}"; do
        ORDER+=("$mode")
        measure "$mode"
        sleep 2
    done
done

# --- report ---------------------------------------------------------------------------------------
RESULT_FILE=$(results_file shaping-relay)
{
    echo "# Relay to $DOMAINS domains under per-domain shaping, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$COMMAND_LINE\` (PROFILE=$PROFILE)"
    echo
    host_info
    echo "- load: \`ringmail-load smtp\`, $SESSIONS sessions, 1 KB, 1 recipient, $PER_CONNECTION messages per connection, $TOTAL messages per run over $DOMAINS domains (\`u{n}@d{n}.test\`, cycling)"
    echo "- shaped: one \`[relay.shaping.\"dN.test\"]\` per domain: max_connections = $CONNS, messages_per_second = $RATE, max_messages_per_connection = $PER_CONNECTION; unshaped: none"
    echo "- MX: a loopback dnslib server, every MX host at 127.0.0.1; the sink: \`smtp-sink -c\` on the relay port"
    echo "- run order: ${ORDER[*]}"
    echo
    echo "| # | mode | accepted | accepted/s | relayed | e2e s | relayed/s |"
    echo "|---|---|---|---|---|---|---|"
    for i in "${!RUN_MODE[@]}"; do
        s=${RUN_SMTP[$i]}
        r=${RUN_RELAY[$i]}
        echo "| $((i + 1)) | ${RUN_MODE[$i]} | $(result_field "$s" accepted) | $(result_field "$s" rate) | $(result_field "$r" relayed)$([ "$(result_field "$r" timed_out)" = true ] && echo ' (timed out)') | $(result_field "$r" e2e_s) | $(result_field "$r" rate) |"
    done
    echo
    echo "| mode | median relayed/s |"
    echo "|---|---|"
    for mode in shaped unshaped; do
        rates=()
        for i in "${!RUN_MODE[@]}"; do
            [ "${RUN_MODE[$i]}" = "$mode" ] && rates+=("$(result_field "${RUN_RELAY[$i]}" rate)")
        done
        echo "| $mode | $(median "${rates[@]}") |"
    done
    echo
    echo "Commands:"
    echo
    for i in "${!RUN_CMD[@]}"; do echo "- \`${RUN_CMD[$i]}\`"; done
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"
