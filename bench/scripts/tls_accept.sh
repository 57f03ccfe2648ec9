#!/usr/bin/env bash
# tls_accept.sh: what TLS costs ringmail's SMTP service. Two measurements, each beside its
# plaintext figure, against one ringmail with its self-signed certificate (made on first start):
#
# 1. Handshakes per second: `ringmail-load smtp --handshake-only`, HANDSHAKES connections from
#    SESSIONS concurrent clients, each connect + (TLS) + EHLO + QUIT, no mail. Modes: plaintext,
#    SMTPS (implicit TLS, RFC 8314) and STARTTLS (RFC 3207). Full handshakes: the load generator
#    turns session resumption off.
# 2. Durable acceptance over STARTTLS: `ringmail-load smtp --tls starttls --sessions 20 --size 1024
#    --per-connection 100 --total 20000` (reused connections, so few handshakes) against the same
#    command in plaintext. 250 only after the queue's fdatasync, as in smtp_accept.sh; after each
#    run the script waits until everything accepted is delivered.
#
# Runs alternate plaintext and TLS (A B A B) and the order is written down. Writes
# bench/results/tls-accept-<date>.md with every command and RESULT line.
#
# Each measured run holds the shared benchmark lock (/tmp/ringmail-bench.lock, see lib.sh).
# The work directory is kept afterwards unless KEEP_WORK=0 (deleting many files slows this
# kind of disk for minutes).
#
# Usage: bench/scripts/tls_accept.sh [--runs PAIRS] [--handshakes-only] [--accept-only]
# Environment: SESSIONS (20) SIZE (1024) PER_CONNECTION (100) TOTAL (20000) HANDSHAKES (5000)
#              KEEP_WORK (1) RINGMAIL_LOG_LEVEL (warn) RINGMAIL=/path/to/ringmail
# Smoke test (seconds, not a measurement): TOTAL=40 HANDSHAKES=40 SESSIONS=2 bench/scripts/tls_accept.sh --runs 1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-1024}
PER_CONNECTION=${PER_CONNECTION:-100}
TOTAL=${TOTAL:-20000}
HANDSHAKES=${HANDSHAKES:-5000}
SPREAD=20
PAIRS=2
DO_HANDSHAKES=1
DO_ACCEPT=1
while [ $# -gt 0 ]; do
    case $1 in
        --runs) PAIRS=$2; shift ;;
        --handshakes-only) DO_ACCEPT=0 ;;
        --accept-only) DO_HANDSHAKES=0 ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done

WORK=$(mktemp -d /tmp/ringmail-tls-bench.XXXXXX)
# ringmail drops to an unprivileged user, which must reach its data directory inside.
chmod 755 "$WORK"
MAIL=$WORK/ringmail-data/mail
cleanup() {
    stop_all_started
    if [ "${KEEP_WORK:-1}" = 1 ]; then log "kept $WORK (remove it when nobody is measuring)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_load
build_ringmail

SMTP_PORT=$(free_port)
SMTPS_PORT=$(free_port)
mkdir -p "$WORK/ringmail-data" "$MAIL"
write_ringmail_config "$WORK/ringmail.toml" "$WORK/ringmail-data" "$MAIL" "$SMTP_PORT" "$(free_port)"
# The SMTPS listener; no [tls] section, so ringmail makes and uses its self-signed certificate
# (P-256 ECDSA) in $WORK/ringmail-data/tls/.
sed -i "s|^listen = \[\"127.0.0.1:$SMTP_PORT\"\]|&\nsmtps_listen = [\"127.0.0.1:$SMTPS_PORT\"]|" "$WORK/ringmail.toml"
give_to_ringmail_user "$WORK/ringmail-data" "$MAIL"
start_bg "$WORK/ringmail.log" "$RINGMAIL" serve --config "$WORK/ringmail.toml"
RINGMAIL_PID=$STARTED_PID
wait_listening "$SMTP_PORT" "$RINGMAIL_PID" ringmail || { cat "$WORK/ringmail.log" >&2; exit 1; }
wait_listening "$SMTPS_PORT" "$RINGMAIL_PID" ringmail || { cat "$WORK/ringmail.log" >&2; exit 1; }
log "ringmail (pid $RINGMAIL_PID): smtp 127.0.0.1:$SMTP_PORT, smtps 127.0.0.1:$SMTPS_PORT"

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

declare -a KIND=() NAME=() LINES=() COMMANDS=()
EXPECTED=0
# run KIND NAME COMMAND...: one measured run under the benchmark lock.
run() {
    local kind=$1 name=$2 out line accepted
    shift 2
    bench_lock
    log "run $(( ${#NAME[@]} + 1 )): $kind $name"
    out=$("$@" 2>"$WORK/load-errors.txt") || log "$kind $name: load reported errors"
    cat "$WORK/load-errors.txt" >&2
    echo "$out" >&2
    line=$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed")
    KIND+=("$kind"); NAME+=("$name"); COMMANDS+=("$*"); LINES+=("$line")
    if [ "$kind" = accept ]; then
        accepted=$(result_field "$line" accepted)
        EXPECTED=$(( EXPECTED + ${accepted:-0} ))
        drain "$EXPECTED"
    fi
    bench_unlock
}

handshakes() {
    local name=$1 port=$2 tls=$3
    run handshakes "$name" "$LOAD" smtp --server "127.0.0.1:$port" --sessions "$SESSIONS" \
        --handshake-only --tls "$tls" --total "$HANDSHAKES" --duration-limit 120s
}

accept() {
    local name=$1 tls=$2
    run accept "$name" "$LOAD" smtp --server "127.0.0.1:$SMTP_PORT" --sessions "$SESSIONS" \
        --size "$SIZE" --per-connection "$PER_CONNECTION" --total "$TOTAL" \
        --to 'u{n}@example.test' --to-spread "$SPREAD" --tls "$tls" --duration-limit 120s
}

for _ in $(seq 1 "$PAIRS"); do
    if [ "$DO_HANDSHAKES" = 1 ]; then
        handshakes plaintext "$SMTP_PORT" none
        handshakes smtps "$SMTPS_PORT" smtps
        handshakes starttls "$SMTP_PORT" starttls
    fi
    if [ "$DO_ACCEPT" = 1 ]; then
        accept plaintext none
        accept starttls starttls
    fi
done

# --- report ------------------------------------------------------------------------------------
RESULT_FILE=$(results_file tls-accept)
{
    echo "# SMTP over TLS: handshakes and durable acceptance, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    host_info
    echo "- ringmail: fresh data dir, log level ${RINGMAIL_LOG_LEVEL:-warn}, its self-signed P-256 certificate; TLS 1.3 (rustls + aws-lc-rs on both ends)"
    echo "- handshakes: connect + TLS + EHLO + QUIT per unit, no mail, full handshakes (no resumption); $SESSIONS clients"
    echo "- acceptance: $SESSIONS sessions, $SIZE-byte messages, $PER_CONNECTION per connection, 250 after fdatasync; the script waits for delivery after each run"
    echo "- run order: $(for i in "${!NAME[@]}"; do printf '%s ' "${KIND[$i]}/${NAME[$i]}"; done)"
    echo
    echo "| run | measurement | mode | done | errors | elapsed s | per s | p50 ms | p90 ms | p99 ms | max ms |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for i in "${!NAME[@]}"; do
        line=${LINES[$i]}
        echo "| $((i + 1)) | ${KIND[$i]} | ${NAME[$i]} | $(result_field "$line" accepted) | $(result_field "$line" errors) | $(result_field "$line" elapsed_s) | $(result_field "$line" rate) | $(result_field "$line" p50_ms) | $(result_field "$line" p90_ms) | $(result_field "$line" p99_ms) | $(result_field "$line" max_ms) |"
    done
    echo
    for kind in handshakes accept; do
        for name in plaintext smtps starttls; do
            rates=()
            for i in "${!NAME[@]}"; do
                if [ "${KIND[$i]}" = "$kind" ] && [ "${NAME[$i]}" = "$name" ]; then
                    r=$(result_field "${LINES[$i]}" rate)
                    [ -n "$r" ] && rates+=("$r")
                fi
            done
            [ "${#rates[@]}" -gt 0 ] && echo "- $kind $name median: $(median "${rates[@]}")/s"
        done
    done
    echo
    echo "Commands and raw RESULT lines:"
    echo
    echo '```'
    for i in "${!NAME[@]}"; do
        echo "# ${KIND[$i]} ${NAME[$i]}: ${COMMANDS[$i]}"
        echo "${LINES[$i]}"
    done
    echo '```'
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"
cat "$RESULT_FILE"
