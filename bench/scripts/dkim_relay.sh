#!/usr/bin/env bash
# dkim_relay.sh: relay throughput with DKIM signing off, RSA-2048 and Ed25519, 1 KB and 100 KB.
#
# One ringmail relay per signing mode (off, rsa, ed25519; restarted between modes, as the keys
# are configuration), each taking the same load from `ringmail-load smtp` (SESSIONS sessions,
# 1 recipient per message, From: load@sender.test) and relaying it to Postfix's `smtp-sink`
# (accepts and discards). The keys are made by `ringmail dkim keygen sender.test ...` in the
# work dir. Per cell (message size), --runs N rounds; each round runs the three modes in a
# rotating order (off rsa ed25519, rsa ed25519 off, ...), so no mode always runs first.
#
# Measured per run (as relay_vs_postfix.sh, see there): accepted/s at the client, and
# relayed/s end to end (accepted messages / time until smtp-sink's counter showed them all).
# After every run, smtp-sink's capture file (-D, on tmpfs) is checked: one transaction per
# accepted message, and for the signing modes one `DKIM-Signature:` per message, else the run
# is marked UNVERIFIED. Writes bench/results/dkim-relay-<date>.md.
#
# Every load is bounded: each run sends at most TOTAL messages for at most LOAD_LIMIT and waits
# at most WAIT_LIMIT for the sink; before and after each run the script waits at most 5 s for
# the sink to fall quiet. Worst case for --runs 1: 6 x (50 + 35 + 10 + 3) s = ~10 minutes plus
# the builds and any wait for the benchmark lock (see lib.sh); do not wrap it in flock.
#
# Usage: bench/scripts/dkim_relay.sh [--runs N] [--cells "1024 102400"] [--modes "off rsa ed25519"]
# Environment: SESSIONS (20) TOTAL_SMALL (10000: cells under 10 KB) TOTAL_LARGE (2000)
#              PER_CONNECTION (100) LOAD_LIMIT (50s) WAIT_LIMIT (35s) PAUSE (3) CONNECTIONS (20)
#              KEEP_WORK (1) RINGMAIL_LOG_LEVEL (warn) RINGMAIL=/path/to/ringmail
# Smoke test: TOTAL_SMALL=50 TOTAL_LARGE=20 bench/scripts/dkim_relay.sh --runs 1
# Needs root (apt-get install postfix for smtp-sink if missing; smtp-sink drops to postfix).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

COMMAND_LINE="bench/scripts/$(basename "$0")${*:+ $*}"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
SESSIONS=${SESSIONS:-20}
TOTAL_SMALL=${TOTAL_SMALL:-10000}
TOTAL_LARGE=${TOTAL_LARGE:-2000}
PER_CONNECTION=${PER_CONNECTION:-100}
LOAD_LIMIT=${LOAD_LIMIT:-50s}
WAIT_LIMIT=${WAIT_LIMIT:-35s}
PAUSE=${PAUSE:-3}
CONNECTIONS=${CONNECTIONS:-20}
RUNS=3
CELLS="1024 102400"
MODES="off rsa ed25519"
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        --cells) CELLS=$2; shift ;;
        --modes) MODES=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs takes a positive number"
for cell in $CELLS; do [[ $cell =~ ^[1-9][0-9]*$ ]] || die "bad cell $cell (want a size in bytes)"; done
for mode in $MODES; do [[ $mode =~ ^(off|rsa|ed25519)$ ]] || die "bad mode $mode (off, rsa, ed25519)"; done
read -r -a MODE_LIST <<<"$MODES"

WORK=$(mktemp -d /tmp/ringmail-dkim-bench.XXXXXX)
# ringmail (as nobody) must traverse the work dir to its data dir; the keys stay root-only (read
# before the privilege drop).
chmod 755 "$WORK"
SHM=$(mktemp -d /dev/shm/ringmail-dkim-sink.XXXXXX)
COUNTER=$SHM/counter
CAPTURE=$SHM/capture
RM_PID=
cleanup() {
    stop_all_started
    rm -rf "$SHM"
    if [ "${KEEP_WORK:-1}" = 1 ]; then log "kept $WORK (remove it when nobody is measuring)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_smtp_sink || die "smtp-sink (Debian package postfix) is not available"
if [ "$POSTFIX_INSTALLED_NOW" = 1 ] && /usr/sbin/postfix status >/dev/null 2>&1; then
    /usr/sbin/postfix stop || true
fi
build_load
build_ringmail

# --- smtp-sink --------------------------------------------------------------------------------
SINK_PORT=$(free_port)
chown postfix "$SHM"
start_bg "$COUNTER" "$SINK" -c -D "$CAPTURE" -u postfix "127.0.0.1:$SINK_PORT" 1024
SINK_PID=$STARTED_PID
wait_listening "$SINK_PORT" "$SINK_PID" smtp-sink || die "smtp-sink did not start"
log "smtp-sink (pid $SINK_PID) on 127.0.0.1:$SINK_PORT"

# --- keys -------------------------------------------------------------------------------------
mkdir -m 700 -p "$WORK/keys"
"$RINGMAIL" dkim keygen sender.test bench-rsa --algorithm rsa --bits 2048 --dir "$WORK/keys" >"$WORK/keys/rsa.txt" 2>/dev/null
"$RINGMAIL" dkim keygen sender.test bench-ed --algorithm ed25519 --dir "$WORK/keys" >"$WORK/keys/ed25519.txt" 2>/dev/null

# Starts ringmail for MODE on a fresh data dir; sets RM_PORT and RM_PID.
start_ringmail() {
    local mode=$1 conf=$WORK/ringmail-$1.toml data=$WORK/data-$1
    RM_PORT=$(free_port)
    rm -rf "$data"
    mkdir -p "$data"
    write_ringmail_relay_config "$conf" "$data" "$RM_PORT" "$SINK_PORT" "$CONNECTIONS"
    case $mode in
        rsa) printf '\n[[dkim.keys]]\ndomain = "sender.test"\nselector = "bench-rsa"\nalgorithm = "rsa"\nkey_file = "%s"\n' "$WORK/keys/sender.test.bench-rsa.pem" >>"$conf" ;;
        ed25519) printf '\n[[dkim.keys]]\ndomain = "sender.test"\nselector = "bench-ed"\nalgorithm = "ed25519"\nkey_file = "%s"\n' "$WORK/keys/sender.test.bench-ed.pem" >>"$conf" ;;
    esac
    give_to_ringmail_user "$data"
    start_bg "$WORK/ringmail-$mode.log" "$RINGMAIL" serve --config "$conf"
    RM_PID=$STARTED_PID
    wait_listening "$RM_PORT" "$RM_PID" ringmail || { cat "$WORK/ringmail-$mode.log" >&2; die "ringmail ($mode) did not start"; }
}

sink_quiet() {
    local last now
    last=$(sink_count "$COUNTER")
    for _ in $(seq 1 5); do
        sleep 1
        now=$(sink_count "$COUNTER")
        [ "$now" = "$last" ] && return 0
        last=$now
    done
    log "warning: the sink still counts messages (now $now)"
}
empty_capture() { if [ -e "$CAPTURE" ]; then : >"$CAPTURE"; fi; }

declare -a RUN_CELL=() RUN_MODE=() RUN_SMTP=() RUN_RELAY=() RUN_CHECK=() RUN_CMD=()
measure() {
    local mode=$1 size=$2 total=$3 cmd out smtp relay accepted mails sigs check
    start_ringmail "$mode"
    cmd="$LOAD smtp --server 127.0.0.1:$RM_PORT --sessions $SESSIONS --size $size --recipients 1 --per-connection $PER_CONNECTION --total $total --to u{n}@remote.test --duration-limit $LOAD_LIMIT --wait-sink $COUNTER --wait-timeout $WAIT_LIMIT"
    bench_lock
    sink_quiet
    empty_capture
    log "run $(( ${#RUN_MODE[@]} + 1 )): dkim $mode, $size B, $total messages"
    # shellcheck disable=SC2086 # the command is words, with no quoting needed
    out=$($cmd 2>"$WORK/load-errors.txt") || log "$mode: the load reported errors or a timeout"
    cat "$WORK/load-errors.txt" >&2
    smtp=$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed")
    relay=$(grep '^RESULT smtp-relayed ' <<<"$out" || echo "RESULT smtp-relayed failed")
    echo "$smtp" >&2
    echo "$relay" >&2
    accepted=$(result_field "$smtp" accepted)
    accepted=${accepted:-0}
    sink_quiet
    mails=$(grep -c '^X-Mail-Args: ' "$CAPTURE" 2>/dev/null || true)
    sigs=$(grep -c '^DKIM-Signature: ' "$CAPTURE" 2>/dev/null || true)
    local want_sigs=$accepted
    [ "$mode" = off ] && want_sigs=0
    if [ "${mails:-0}" = "$accepted" ] && [ "${sigs:-0}" = "$want_sigs" ]; then
        check="ok ($mails transactions, $sigs signatures)"
    else
        check="UNVERIFIED: $mails transactions and $sigs signatures for $accepted accepted"
    fi
    empty_capture
    bench_unlock
    stop_pid "$RM_PID"
    RUN_CELL+=("$size"); RUN_MODE+=("$mode"); RUN_SMTP+=("$smtp"); RUN_RELAY+=("$relay")
    RUN_CHECK+=("$check"); RUN_CMD+=("$cmd")
}

for cell in $CELLS; do
    if [ "$cell" -lt 10240 ]; then total=$TOTAL_SMALL; else total=$TOTAL_LARGE; fi
    for run in $(seq 1 "$RUNS"); do
        n=${#MODE_LIST[@]}
        for k in $(seq 0 $(( n - 1 ))); do
            mode=${MODE_LIST[$(( (k + run - 1) % n ))]}
            measure "$mode" "$cell" "$total"
            sleep "$PAUSE"
        done
    done
done

# --- report -------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && a != "n/a" && b != "" && b != "n/a" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
RESULT_FILE=$(results_file dkim-relay)
{
    echo "# Relay with DKIM signing: off vs RSA-2048 vs Ed25519, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    host_info
    echo "- sink: \`$SINK -c -D (tmpfs) -u postfix 127.0.0.1:$SINK_PORT 1024\`; $SESSIONS sessions, $PER_CONNECTION messages per connection, 1 recipient, From: load@sender.test"
    echo "- $TOTAL_SMALL messages per run under 10 KB, $TOTAL_LARGE above; rounds per cell: $RUNS; modes rotate order per round"
    echo "- keys: \`ringmail dkim keygen sender.test bench-rsa --bits 2048\` and \`... bench-ed --algorithm ed25519\`; relaxed/relaxed, the default signed-header list"
    echo
    echo "## Every run, in order"
    echo
    echo "| # | size | dkim | accepted | errors | accepted/s | p50 ms | p99 ms | relayed/s | check |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for i in "${!RUN_MODE[@]}"; do
        s=${RUN_SMTP[$i]}; r=${RUN_RELAY[$i]}
        echo "| $((i + 1)) | ${RUN_CELL[$i]} | ${RUN_MODE[$i]} | $(result_field "$s" accepted) | $(result_field "$s" errors) | $(result_field "$s" rate) | $(result_field "$s" p50_ms) | $(result_field "$s" p99_ms) | $(result_field "$r" rate)$([ "$(result_field "$r" timed_out)" = true ] && echo ' (timed out)') | ${RUN_CHECK[$i]} |"
    done
    echo
    echo "## Medians of relayed/s per cell"
    echo
    echo "| size | off | rsa | ed25519 | rsa / off | ed25519 / off |"
    echo "|---|---|---|---|---|---|"
    for cell in $CELLS; do
        declare -A med=()
        for mode in off rsa ed25519; do
            vals=()
            for i in "${!RUN_MODE[@]}"; do
                [ "${RUN_CELL[$i]}" = "$cell" ] && [ "${RUN_MODE[$i]}" = "$mode" ] || continue
                [ "$(result_field "${RUN_RELAY[$i]}" timed_out)" = false ] || continue
                vals+=("$(result_field "${RUN_RELAY[$i]}" rate)")
            done
            med[$mode]=$(median "${vals[@]}")
        done
        echo "| $cell | ${med[off]} | ${med[rsa]} | ${med[ed25519]} | $(ratio "${med[rsa]}" "${med[off]}") | $(ratio "${med[ed25519]}" "${med[off]}") |"
        unset med
    done
    echo
    echo "## Commands and raw RESULT lines"
    echo
    echo '```'
    for i in "${!RUN_MODE[@]}"; do
        echo "# $((i + 1)) ${RUN_MODE[$i]}: ${RUN_CMD[$i]}"
        echo "${RUN_SMTP[$i]}"
        echo "${RUN_RELAY[$i]}"
    done
    echo '```'
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"
cat "$RESULT_FILE"
