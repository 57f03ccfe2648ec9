#!/usr/bin/env bash
# smtp_accept.sh: SMTP acceptance rate of ringmail (durable 250s) against Postfix's smtp-sink
# (no disk at all), then ringmail's end-to-end rate from first send to last Maildir file.
#
# Each measured run is `ringmail-load smtp --sessions 20 --size 1024 --per-connection 100
# --total 20000` against a loopback high port. Runs alternate smtp-sink and ringmail (A B A B);
# after each ringmail run the script waits until everything accepted is delivered, so no run
# starts with the previous run's backlog. The last run adds --wait-delivered. Writes
# bench/results/smtp-accept-<date>.md.
#
# Each measured run (and the drain after it) holds the shared benchmark lock
# (/tmp/ringmail-bench.lock, see lib.sh); do not wrap this script in flock yourself.
# The work directory is kept afterwards: deleting tens of thousands of files slows this kind of
# disk for minutes (discard), which would skew the next benchmark on the host. Remove it when
# nobody is measuring, or set KEEP_WORK=0.
#
# Usage: bench/scripts/smtp_accept.sh [--sink-only] [--runs PAIRS]
# Environment: SESSIONS (20) SIZE (1024) PER_CONNECTION (100) TOTAL (20000) KEEP_WORK (1)
#              RINGMAIL_LOG_LEVEL (warn)
#              RINGMAIL=/path/to/ringmail (use that binary instead of building one)
# Installing postfix (for smtp-sink) needs root; the system Postfix is never started.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-1024}
PER_CONNECTION=${PER_CONNECTION:-100}
TOTAL=${TOTAL:-20000}
SPREAD=20
PAIRS=2
WITH_RINGMAIL=1
while [ $# -gt 0 ]; do
    case $1 in
        --sink-only) WITH_RINGMAIL=0 ;;
        --runs) PAIRS=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done

WORK=$(mktemp -d /tmp/ringmail-smtp-bench.XXXXXX)
MAIL=$WORK/ringmail-data/mail
cleanup() {
    stop_all_started
    if [ "${KEEP_WORK:-1}" = 1 ]; then log "kept $WORK (remove it when nobody is measuring)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# smtp-sink comes with Debian's postfix package: ensure_smtp_sink (lib.sh) installs it without
# configuring or starting a system Postfix.
HAVE_SINK=1
ensure_smtp_sink || { HAVE_SINK=0; log "smtp-sink unavailable; measuring ringmail alone"; }
[ "$HAVE_SINK" = 0 ] && [ "$WITH_RINGMAIL" = 0 ] && die "nothing to measure"
build_load
if [ "$WITH_RINGMAIL" = 1 ]; then build_ringmail; fi

if [ "$HAVE_SINK" = 1 ]; then
    SINK_PORT=$(free_port)
    # -u: the user smtp-sink drops to when started as root; backlog 1024 (a small one stalls
    # 20 concurrent clients for seconds).
    start_bg "$WORK/smtp-sink.log" "$SINK" -u "$(id -un postfix 2>/dev/null || echo nobody)" "127.0.0.1:$SINK_PORT" 1024
    SINK_PID=$STARTED_PID
    wait_listening "$SINK_PORT" "$SINK_PID" smtp-sink || { cat "$WORK/smtp-sink.log" >&2; exit 1; }
    log "smtp-sink (pid $SINK_PID) on 127.0.0.1:$SINK_PORT"
fi

if [ "$WITH_RINGMAIL" = 1 ]; then
    RINGMAIL_PORT=$(free_port)
    mkdir -p "$WORK/ringmail-data"
    write_ringmail_config "$WORK/ringmail.toml" "$WORK/ringmail-data" "$MAIL" "$RINGMAIL_PORT" "$(free_port)"
    mkdir -p "$MAIL"
    give_to_ringmail_user "$WORK/ringmail-data" "$MAIL"
    start_bg "$WORK/ringmail.log" "$RINGMAIL" serve --config "$WORK/ringmail.toml"
    RINGMAIL_PID=$STARTED_PID
    wait_listening "$RINGMAIL_PORT" "$RINGMAIL_PID" ringmail || { cat "$WORK/ringmail.log" >&2; exit 1; }
    log "ringmail (pid $RINGMAIL_PID) on 127.0.0.1:$RINGMAIL_PORT"
fi

load_command() {
    echo "$LOAD smtp --server 127.0.0.1:$1 --sessions $SESSIONS --size $SIZE --per-connection $PER_CONNECTION --total $TOTAL --to u{n}@example.test --to-spread $SPREAD --duration-limit 120s"
}

delivered_count() {
    if [ -d "$MAIL" ]; then find "$MAIL" -path '*/Maildir/new/*' -type f | wc -l; else echo 0; fi
}

# Waits (up to 5 minutes) until N files are in the Maildirs: the previous run's backlog is gone.
drain() {
    local want=$1
    for _ in $(seq 1 300); do
        [ "$(delivered_count)" -ge "$want" ] && return 0
        sleep 1
    done
    log "warning: only $(delivered_count) of $want messages delivered after 5 minutes"
}

declare -a ORDER=() LINES=() COMMANDS=()
EXPECTED=0
measure() {
    bench_lock
    measure_unlocked "$@"
    bench_unlock
}

measure_unlocked() {
    local name=$1 port=$2 extra=${3:-} out cmd smtp_line accepted
    cmd="$(load_command "$port")$extra"
    log "run $(( ${#ORDER[@]} + 1 )): $name"
    out=$($cmd 2>"$WORK/load-errors.txt") || log "$name: load reported errors"
    cat "$WORK/load-errors.txt" >&2
    echo "$out" >&2
    smtp_line=$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed")
    ORDER+=("$name")
    COMMANDS+=("$cmd")
    LINES+=("$smtp_line")
    if [ -n "$extra" ]; then
        ORDER+=("$name end-to-end")
        COMMANDS+=("(same run)")
        LINES+=("$(grep '^RESULT smtp-delivered' <<<"$out" || echo "RESULT smtp-delivered failed")")
    fi
    if [ "$name" = ringmail ]; then
        accepted=$(result_field "$smtp_line" accepted)
        EXPECTED=$(( EXPECTED + ${accepted:-0} ))
        if [ -z "$extra" ]; then drain "$EXPECTED"; fi
    fi
}

for _ in $(seq 1 "$PAIRS"); do
    if [ "$HAVE_SINK" = 1 ]; then measure smtp-sink "$SINK_PORT"; fi
    if [ "$WITH_RINGMAIL" = 1 ]; then measure ringmail "$RINGMAIL_PORT"; fi
done
if [ "$WITH_RINGMAIL" = 1 ]; then
    measure ringmail "$RINGMAIL_PORT" " --wait-delivered $MAIL --expect $TOTAL --wait-timeout 300s"
fi

# --- report ------------------------------------------------------------------------------------
RESULT_FILE=$(results_file smtp-accept)
declare -a SINK_RATES=() RINGMAIL_RATES=()
{
    echo "# SMTP acceptance: ringmail vs smtp-sink, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    host_info
    if [ "$HAVE_SINK" = 1 ]; then
        echo "- smtp-sink from Debian postfix $(dpkg-query -W -f '${Version}' postfix 2>/dev/null || echo '?'): accepts and discards, no disk (the ceiling for any server on this host)"
    fi
    if [ "$WITH_RINGMAIL" = 1 ]; then
        echo "- ringmail: fresh data dir, log level ${RINGMAIL_LOG_LEVEL:-warn}, 250 only after the queue's fdatasync; recipients u1..u$SPREAD@example.test delivered to Maildirs"
        echo "- after each ringmail run the script waits until all its mail is delivered, so every run starts with an empty queue"
    else
        echo "- ringmail not measured (--sink-only)"
    fi
    echo "- each server's runs use the same load command; run order: ${ORDER[*]}"
    echo
    echo "| run | server | accepted | errors | elapsed s | msg/s | MB/s | p50 ms | p90 ms | p99 ms | max ms |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for i in "${!ORDER[@]}"; do
        line=${LINES[$i]}
        case ${ORDER[$i]} in
            *end-to-end)
                echo "| $((i + 1)) | ${ORDER[$i]} | $(result_field "$line" delivered) delivered | timed out: $(result_field "$line" timed_out) | $(result_field "$line" e2e_s) | $(result_field "$line" rate) | | | | | |"
                continue ;;
        esac
        rate=$(result_field "$line" rate)
        echo "| $((i + 1)) | ${ORDER[$i]} | $(result_field "$line" accepted) | $(result_field "$line" errors) | $(result_field "$line" elapsed_s) | $rate | $(result_field "$line" mb_s) | $(result_field "$line" p50_ms) | $(result_field "$line" p90_ms) | $(result_field "$line" p99_ms) | $(result_field "$line" max_ms) |"
        if [ -n "$rate" ]; then
            if [ "${ORDER[$i]}" = smtp-sink ]; then SINK_RATES+=("$rate"); else RINGMAIL_RATES+=("$rate"); fi
        fi
    done
    echo
    if [ "$HAVE_SINK" = 1 ]; then smed=$(median "${SINK_RATES[@]}"); echo "- smtp-sink median: $smed msg/s"; fi
    if [ "$WITH_RINGMAIL" = 1 ]; then rmed=$(median "${RINGMAIL_RATES[@]}"); echo "- ringmail median (accept runs, end-to-end run included): $rmed msg/s"; fi
    if [ "$HAVE_SINK" = 1 ] && [ "$WITH_RINGMAIL" = 1 ]; then
        echo "- **ratio ringmail / smtp-sink: $(awk -v r="$rmed" -v s="$smed" 'BEGIN { if (s > 0) printf "%.2f", r / s; else print "n/a" }')**"
    fi
    echo
    echo "Commands and raw RESULT lines:"
    echo
    echo '```'
    for i in "${!ORDER[@]}"; do
        echo "# ${ORDER[$i]}: ${COMMANDS[$i]}"
        echo "${LINES[$i]}"
    done
    echo '```'
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"
cat "$RESULT_FILE"
