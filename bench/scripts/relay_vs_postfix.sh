#!/usr/bin/env bash
# relay_vs_postfix.sh: relay end to end, ringmail against Postfix, side by side in one run.
#
# Both relays take the same load from the same client (`ringmail-load smtp`, 20 sessions) and
# relay it to the same Postfix `smtp-sink` (accepts and discards: no disk, the ceiling), for the
# matrix message size 1 KB and 100 KB x 1 and 10 recipients per message. Per cell, --runs N
# rounds; each round runs both relays, ringmail first in odd rounds and Postfix first in even
# ones (R P, P R, R P, ...), so neither always runs on the disk the other has just churned.
# Each round starts with the same load sent straight to smtp-sink ("sink"): the ceiling of
# this client, sink and host in the same run, since no relay delivers faster than the sink takes
# mail directly; the report shows each relay's share of it.
#
# Measured per run:
#   accepted/s  messages that got a 250 after DATA, divided by the time from the first
#               connection to the last session's end (the client's view, as in smtp_accept.sh);
#   relayed/s   end to end: messages accepted in the run, divided by the time from the first
#               message sent to the moment smtp-sink's message counter (`smtp-sink -c`) showed
#               that many more messages than before the run (`ringmail-load --wait-sink`, polled
#               every 5 ms). The unit is the message (one mail transaction at the sink). A
#               10-recipient message counts once, when its transaction, which carries all 10
#               recipients, has ended; recipients/s is relayed/s x 10. That every message arrived
#               as exactly one transaction with all its recipients is checked after every run
#               from smtp-sink's capture file (-D, on tmpfs): MAIL and RCPT counts must equal
#               accepted and accepted x recipients, else the run is marked unverified.
# Writes bench/results/relay-vs-postfix-<date>.md.
#
# Postfix is its own instance (config, queue and data directories in the work dir, loopback
# ports only, `postfix -c DIR start-fg`); the system Postfix is never started. Its settings that
# differ from Postfix's defaults are written into the report with the reason for each.
#
# Every load is bounded in count and time: each run sends at most TOTAL messages for at most
# LOAD_LIMIT, then waits at most WAIT_LIMIT for the sink; the relay check before the matrix is
# 200 messages in at most 15 s + 15 s; before and after each run the script waits at most 5 s
# for the sink to fall quiet. Worst case for --runs 1: 8 x (50 + 35 + 2 x 5 + 3 pause) s +
# 2 x 30 s = ~20 minutes, plus building when a build is needed and any wait for the benchmark
# lock; typically 3 minutes (--runs 3: 7-10 minutes on a busy host). A relay that
# fails its check or a run (sink never got everything) is stopped and its remaining runs are
# skipped, so its late deliveries cannot be counted for the other relay.
# Each measured run holds the shared benchmark lock (/tmp/ringmail-bench.lock, see lib.sh); do
# not wrap this script in flock yourself.
#
# Usage: bench/scripts/relay_vs_postfix.sh [--runs N] [--postfix-only] [--cells "1024x1 ..."]
#   --runs N         rounds per cell (default 3)
#   --postfix-only   measure Postfix alone (the harness without ringmail)
#   --cells LIST     SIZExRECIPIENTS cells (default "1024x1 1024x10 102400x1 102400x10")
# Environment: SESSIONS (20) TOTAL_SMALL (10000: cells under 10 KB) TOTAL_LARGE (2000)
#              PER_CONNECTION (100) LOAD_LIMIT (50s) WAIT_LIMIT (35s) PAUSE (3: seconds between
#              runs) CONNECTIONS (20: each relay's connections to the sink) DUMP (1: verify
#              transactions and recipients from smtp-sink's capture file) KEEP_WORK (1)
#              RINGMAIL_LOG_LEVEL (warn) RINGMAIL=/path/to/ringmail (use that binary)
# Needs root (apt-get install postfix if missing; Postfix and smtp-sink drop to user postfix).
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
DUMP=${DUMP:-1}
RUNS=3
WITH_RINGMAIL=1
CELLS="1024x1 1024x10 102400x1 102400x10"
RCPT_TEMPLATE='u{n}@remote.test'
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift ;;
        --postfix-only) WITH_RINGMAIL=0 ;;
        --cells) CELLS=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs takes a positive number"
for cell in $CELLS; do
    [[ $cell =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || die "bad cell $cell (want SIZExRECIPIENTS)"
done

WORK=$(mktemp -d /tmp/ringmail-relay-bench.XXXXXX)
# Postfix's daemons (user postfix) must traverse the work dir to their queue.
chmod 755 "$WORK"
# smtp-sink's counter and capture file live in memory, so the sink stays diskless.
SHM=$(mktemp -d /dev/shm/ringmail-relay-sink.XXXXXX)
COUNTER=$SHM/counter
CAPTURE=$SHM/capture
PF_DIR=$WORK/postfix
PF_MASTER_PID=
cleanup() {
    stop_postfix
    stop_all_started
    rm -rf "$SHM"
    if [ "${KEEP_WORK:-1}" = 1 ]; then log "kept $WORK (remove it when nobody is measuring)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_smtp_sink || die "smtp-sink (Debian package postfix) is not available"
if [ "$POSTFIX_INSTALLED_NOW" = 1 ] && /usr/sbin/postfix status >/dev/null 2>&1; then
    # The package install started the system Postfix after all: stop the one we caused.
    log "stopping the system Postfix that the package install started"
    /usr/sbin/postfix stop || true
fi
build_load
if [ "$WITH_RINGMAIL" = 1 ]; then build_ringmail; fi

# --- smtp-sink ------------------------------------------------------------------------------------
SINK_PORT=$(free_port)
chown postfix "$SHM"
sink_args=(-c)
# -D: append every transaction to one capture file (X-Mail-Args / X-Rcpt-Args lines), for the
# check after each run; the file is emptied before each run.
if [ "$DUMP" = 1 ]; then sink_args+=(-D "$CAPTURE"); fi
# -u: the user smtp-sink drops to; backlog 1024 (a small one stalls 20 concurrent clients).
start_bg "$COUNTER" "$SINK" "${sink_args[@]}" -u postfix "127.0.0.1:$SINK_PORT" 1024
SINK_PID=$STARTED_PID
wait_listening "$SINK_PORT" "$SINK_PID" smtp-sink || die "smtp-sink did not start: $(tr '\r' '\n' <"$COUNTER" | tail -n3)"
log "smtp-sink (pid $SINK_PID) on 127.0.0.1:$SINK_PORT, counter $COUNTER"

# --- Postfix as a relay ---------------------------------------------------------------------------
# Settings that differ from Postfix 3.7's defaults, with the reason; written into main.cf and
# into the report.
PF_PORT=$(free_port)
postfix_settings() {
    cat <<EOF
queue_directory = $PF_DIR/queue|its own queue, in the work dir on the same file system as ringmail's
data_directory = $PF_DIR/data|its own state, not the system Postfix's
compatibility_level = 3.6|current defaults, without backwards-compatibility warnings
myhostname = postfix-relay.test|no host name lookup at start
mydomain = bench.test|no domain derived from the host name
mydestination =|nothing is delivered locally: every recipient is relayed
alias_maps =|no local aliases (no /etc/aliases.db needed)
alias_database =|as above
local_recipient_maps =|no local recipients
inet_interfaces = 127.0.0.1|loopback only
inet_protocols = ipv4|loopback is 127.0.0.1
mynetworks = 127.0.0.0/8|loopback clients may relay (ringmail: [smtp] relay_networks)
relayhost = [127.0.0.1]:$SINK_PORT|every domain to the sink, no MX lookup (ringmail: [relay] routes "*")
smtp_dns_support_level = disabled|no DNS at all (the machine has no reachable resolver); replaces disable_dns_lookups = yes
smtp_host_lookup = native|the bracketed relayhost is an IP: nothing to look up
smtpd_peername_lookup = no|no reverse lookup of loopback clients (ringmail does none either)
default_destination_concurrency_limit = $CONNECTIONS|$CONNECTIONS connections to the sink, as ringmail's max_connections_per_destination (20 is also Postfix's default)
smtp_connection_cache_on_demand = yes|reuse connections to the sink (Postfix's default, stated: ringmail reuses them too)
maillog_file = /dev/stdout|there is no syslog here: postlogd writes the log to the master's stdout, a file in the work dir
EOF
}
start_postfix() {
    mkdir -p "$PF_DIR/conf" "$PF_DIR/queue" "$PF_DIR/data"
    chown postfix "$PF_DIR/data"
    {
        echo "# Generated by bench/scripts/relay_vs_postfix.sh: Postfix defaults except these."
        postfix_settings | cut -d'|' -f1
    } >"$PF_DIR/conf/main.cf"
    # Debian's services without chroot (a chroot would need copies of /etc files in the queue)
    # and without the pipe/local transports; smtpd on a loopback high port.
    cat >"$PF_DIR/conf/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    /usr/sbin/postfix -c "$PF_DIR/conf" check || die "postfix check failed for $PF_DIR/conf"
    start_bg "$WORK/postfix.log" /usr/sbin/postfix -c "$PF_DIR/conf" start-fg
    PF_PID=$STARTED_PID
    wait_listening "$PF_PORT" "$PF_PID" postfix || { cat "$WORK/postfix.log" >&2; die "Postfix did not start"; }
    PF_MASTER_PID=$(tr -d ' ' <"$PF_DIR/queue/pid/master.pid" 2>/dev/null || true)
    log "Postfix $(postfix_version) (master pid ${PF_MASTER_PID:-?}) on 127.0.0.1:$PF_PORT"
}
# Stops our Postfix master (its pid file is in our queue dir; it must be a master process) and
# waits for it; the master stops its own children.
stop_postfix() {
    local pid=$PF_MASTER_PID
    PF_MASTER_PID=
    [ -n "$pid" ] || return 0
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = master ]; then
        stop_pid "$pid"
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
}
postfix_queue_files() {
    find "$PF_DIR/queue/incoming" "$PF_DIR/queue/active" "$PF_DIR/queue/deferred" \
        "$PF_DIR/queue/hold" "$PF_DIR/queue/maildrop" -type f 2>/dev/null | wc -l
}
start_postfix

# --- ringmail as a relay --------------------------------------------------------------------------
if [ "$WITH_RINGMAIL" = 1 ]; then
    RM_PORT=$(free_port)
    mkdir -p "$WORK/ringmail-data"
    write_ringmail_relay_config "$WORK/ringmail.toml" "$WORK/ringmail-data" "$RM_PORT" "$SINK_PORT" "$CONNECTIONS"
    give_to_ringmail_user "$WORK/ringmail-data"
    start_bg "$WORK/ringmail.log" "$RINGMAIL" serve --config "$WORK/ringmail.toml"
    RM_PID=$STARTED_PID
    wait_listening "$RM_PORT" "$RM_PID" ringmail || { cat "$WORK/ringmail.log" >&2; die "ringmail did not start"; }
    log "ringmail (pid $RM_PID) on 127.0.0.1:$RM_PORT"
fi

# "sink" is the client sending straight to smtp-sink: the ceiling of this client, sink and host
# in the same run; no relay can deliver faster than the sink takes mail directly.
declare -A PORT=([postfix]=$PF_PORT [sink]=$SINK_PORT) ALIVE=([postfix]=1 [ringmail]=$WITH_RINGMAIL [sink]=1) WHY_STOPPED=()
if [ "$WITH_RINGMAIL" = 1 ]; then PORT[ringmail]=$RM_PORT; fi

# Stops a relay that failed, so that nothing it still holds reaches the sink later.
retire() {
    local sys=$1 why=$2
    ALIVE[$sys]=0
    WHY_STOPPED[$sys]=$why
    log "$sys: $why; stopping it and skipping its remaining runs"
    if [ "$sys" = postfix ]; then stop_postfix; else stop_pid "$RM_PID"; fi
}

# Waits until the sink's count has not moved for a second (at most 5 s): nothing in flight.
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

# Empties the sink's capture file between runs (smtp-sink, as user postfix, creates it on the
# first transaction and opens it for appending per transaction; root must not create it).
empty_capture() {
    if [ -e "$CAPTURE" ]; then : >"$CAPTURE"; fi
}

load_command() {
    local port=$1 size=$2 rcpts=$3 total=$4 limit=$5 wait=$6
    echo "$LOAD smtp --server 127.0.0.1:$port --sessions $SESSIONS --size $size --recipients $rcpts --per-connection $PER_CONNECTION --total $total --to $RCPT_TEMPLATE --duration-limit $limit --wait-sink $COUNTER --wait-timeout $wait"
}

# One measured run. Appends to the RUN_* arrays; prints nothing on stdout.
declare -a RUN_CELL=() RUN_SYS=() RUN_SMTP=() RUN_RELAY=() RUN_CHECK=() RUN_CMD=()
measure() {
    local sys=$1 size=$2 rcpts=$3 total=$4 limit=$5 wait=$6 cmd out smtp relay check accepted
    local mails rcpt_lines bytes queued
    cmd=$(load_command "${PORT[$sys]}" "$size" "$rcpts" "$total" "$limit" "$wait")
    bench_lock
    sink_quiet
    empty_capture
    log "run $(( ${#RUN_SYS[@]} + 1 )): $sys, ${size} B x $rcpts rcpt, $total messages"
    # shellcheck disable=SC2086 # the command is words, with no quoting needed
    out=$($cmd 2>"$WORK/load-errors.txt") || log "$sys: the load reported errors or a timeout"
    cat "$WORK/load-errors.txt" >&2
    smtp=$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed")
    relay=$(grep '^RESULT smtp-relayed ' <<<"$out" || echo "RESULT smtp-relayed failed")
    echo "$smtp" >&2
    echo "$relay" >&2
    accepted=$(result_field "$smtp" accepted)
    accepted=${accepted:-0}
    # After the count was reached, let stragglers (a relay that split a message into several
    # transactions) arrive before the capture file is read.
    sink_quiet
    check=""
    if [ "$DUMP" = 1 ]; then
        mails=$(grep -c '^X-Mail-Args: ' "$CAPTURE" 2>/dev/null || true)
        rcpt_lines=$(grep -c '^X-Rcpt-Args: ' "$CAPTURE" 2>/dev/null || true)
        # Bytes per message in the capture (LF line ends, plus the sink's and the relay's
        # headers): shows that whole messages arrived.
        bytes=$(stat -c %s "$CAPTURE" 2>/dev/null || echo 0)
        bytes=$(( bytes / (accepted > 0 ? accepted : 1) ))
        if [ "${mails:-0}" = "$accepted" ] && [ "${rcpt_lines:-0}" = $(( accepted * rcpts )) ]; then
            check="ok ($mails transactions, $rcpt_lines recipients, $bytes B each)"
        else
            check="UNVERIFIED: $mails transactions, $rcpt_lines recipients, $bytes B each at the sink for $accepted accepted x $rcpts"
        fi
        empty_capture
    fi
    if [ "$sys" = postfix ]; then
        queued=$(postfix_queue_files)
        if [ "$queued" != 0 ]; then check="${check:+$check; }$queued files left in Postfix's queue"; fi
    fi
    bench_unlock
    RUN_CELL+=("${size}x$rcpts")
    RUN_SYS+=("$sys")
    RUN_SMTP+=("$smtp")
    RUN_RELAY+=("$relay")
    RUN_CHECK+=("${check:-not checked (DUMP=0)}")
    RUN_CMD+=("$cmd")
    if [ "$(result_field "$relay" timed_out)" != false ]; then
        retire "$sys" "the sink did not receive all ${accepted} accepted messages within $wait (run ${#RUN_SYS[@]})"
    elif [ "$accepted" = 0 ]; then
        retire "$sys" "accepted nothing in run ${#RUN_SYS[@]} (first error: $(grep -m1 '^error: ' "$WORK/load-errors.txt" || echo none))"
    fi
}

# --- relay check: can each relay deliver at all? (warms both up; not measured) -------------------
declare -A CHECK_LINE=()
relay_check() {
    local sys=$1 cmd out line
    cmd=$(load_command "${PORT[$sys]}" 1024 1 200 15s 15s)
    out=$($cmd 2>&1) || true
    line=$(grep '^RESULT smtp-relayed ' <<<"$out" || echo "RESULT smtp-relayed failed")
    CHECK_LINE[$sys]="$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed") / $line"
    log "$sys relay check: ${CHECK_LINE[$sys]}"
    if [ "$(result_field "$line" timed_out)" != false ] || [ "$(result_field "$line" expect)" = 0 ]; then
        retire "$sys" "relay check failed (200 messages: $(result_field "$line" expect) accepted, $(result_field "$line" relayed) reached the sink; first error: $(grep -m1 '^error: ' <<<"$out" || echo none))"
    fi
}
bench_lock
relay_check postfix
if [ "$WITH_RINGMAIL" = 1 ]; then relay_check ringmail; fi
bench_unlock
[ "${ALIVE[postfix]}" = 1 ] || die "Postfix does not relay; see $WORK/postfix.log"

# --- the matrix -----------------------------------------------------------------------------------
ORDER=()
for cell in $CELLS; do
    size=${cell%x*}
    rcpts=${cell#*x}
    if [ "$size" -lt 10240 ]; then total=$TOTAL_SMALL; else total=$TOTAL_LARGE; fi
    for run in $(seq 1 "$RUNS"); do
        if (( run % 2 )); then pair=(sink ringmail postfix); else pair=(sink postfix ringmail); fi
        for sys in "${pair[@]}"; do
            [ "${ALIVE[$sys]}" = 1 ] || continue
            ORDER+=("$sys")
            measure "$sys" "$size" "$rcpts" "$total" "$LOAD_LIMIT" "$WAIT_LIMIT"
            sleep "$PAUSE"
        done
    done
done

# --- report ---------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && a != "n/a" && b != "" && b != "n/a" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
RESULT_FILE=$(results_file relay-vs-postfix)
{
    echo "# Relay end to end: ringmail vs Postfix, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$COMMAND_LINE\`"
    echo
    host_info
    echo "- kernel \`$(uname -r)\`, nproc $(nproc); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other engineers' builds share these 2 cores)"
    echo "- Postfix: Debian postfix $(postfix_version), its own instance; smtp-sink from the same package (\`$SINK ${sink_args[*]} -u postfix 127.0.0.1:$SINK_PORT 1024\`)"
    echo "- load: \`ringmail-load smtp\`, $SESSIONS sessions, $PER_CONNECTION messages per connection, recipients \`$RCPT_TEMPLATE\` (one domain, all routed to the sink), at most $LOAD_LIMIT sending and $WAIT_LIMIT waiting per run; $TOTAL_SMALL messages per 1 KB run, $TOTAL_LARGE per 100 KB run"
    echo "- each relay: at most $CONNECTIONS connections to the sink, connections reused"
    echo "- rounds per cell: $RUNS; ringmail first in odd rounds, Postfix first in even ones; pause ${PAUSE}s between runs"
    echo "- run order: ${ORDER[*]:-none}"
    if [ "$WITH_RINGMAIL" = 0 ]; then echo "- **ringmail not measured (--postfix-only)**"; fi
    for sys in postfix ringmail; do
        if [ -n "${WHY_STOPPED[$sys]:-}" ]; then echo "- **$sys stopped: ${WHY_STOPPED[$sys]}**"; fi
    done
    echo
    echo "Definitions: *accepted/s* = messages that got 250 after DATA / (first connect → last session end), at the client."
    echo "*relayed/s* = messages accepted / (first message sent → smtp-sink's message counter shows them all), end to end;"
    echo "one message is one transaction at the sink carrying all its recipients (checked per run from the sink's capture file: column *check*, with the average bytes per message there: LF line ends plus the sink's and the relay's headers); rcpt/s = relayed/s x recipients."
    echo "*sink alone* = the same load sent straight to smtp-sink, first in every round: the ceiling of this client, sink and host; *ceiling / Postfix* is the highest ratio any relay could show here."
    echo
    echo "Relay check before the matrix (200 messages, 1 KB, 1 recipient; also the warm-up):"
    echo
    for sys in postfix ringmail; do
        if [ -n "${CHECK_LINE[$sys]:-}" ]; then echo "- $sys: \`${CHECK_LINE[$sys]}\`"; fi
    done
    echo
    echo "## Every run, in order"
    echo
    echo "| # | cell (bytes x rcpts) | relay | accepted | errors | accepted/s | p50 ms | p99 ms | relayed | e2e s | relayed/s | rcpt/s | check |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for i in "${!RUN_SYS[@]}"; do
        s=${RUN_SMTP[$i]}
        r=${RUN_RELAY[$i]}
        echo "| $((i + 1)) | ${RUN_CELL[$i]} | ${RUN_SYS[$i]} | $(result_field "$s" accepted) | $(result_field "$s" errors) | $(result_field "$s" rate) | $(result_field "$s" p50_ms) | $(result_field "$s" p99_ms) | $(result_field "$r" relayed)$([ "$(result_field "$r" timed_out)" = true ] && echo ' (timed out)') | $(result_field "$r" e2e_s) | $(result_field "$r" rate) | $(result_field "$r" rcpt_rate) | ${RUN_CHECK[$i]} |"
    done
    echo
    echo "## Medians per cell"
    echo
    echo "| cell (bytes x rcpts) | Postfix accepted/s | ringmail accepted/s | ratio | Postfix relayed/s | ringmail relayed/s | **ratio ringmail / Postfix** | sink alone (ceiling) | ceiling / Postfix | ringmail / ceiling |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for cell in $CELLS; do
        declare -a pa=() ra=() pr=() rr=() sk=()
        for i in "${!RUN_SYS[@]}"; do
            [ "${RUN_CELL[$i]}" = "$cell" ] || continue
            a=$(result_field "${RUN_SMTP[$i]}" rate)
            r=$(result_field "${RUN_RELAY[$i]}" rate)
            # A run whose sink never got everything has no end-to-end figure.
            [ "$(result_field "${RUN_RELAY[$i]}" timed_out)" = false ] || r=
            if [ "${RUN_SYS[$i]}" = sink ]; then
                [ -n "$r" ] && sk+=("$r")
            elif [ "${RUN_SYS[$i]}" = postfix ]; then
                [ -n "$a" ] && pa+=("$a")
                [ -n "$r" ] && pr+=("$r")
            else
                [ -n "$a" ] && ra+=("$a")
                [ -n "$r" ] && rr+=("$r")
            fi
        done
        mpa=$(median "${pa[@]}"); mra=$(median "${ra[@]}"); mpr=$(median "${pr[@]}"); mrr=$(median "${rr[@]}"); msk=$(median "${sk[@]}")
        echo "| $cell | $mpa | $mra | $(ratio "$mra" "$mpa") | $mpr | $mrr | **$(ratio "$mrr" "$mpr")** | $msk | $(ratio "$msk" "$mpr") | $(ratio "$mrr" "$msk") |"
        unset pa ra pr rr sk
    done
    echo
    echo "## Postfix settings changed from its defaults"
    echo
    echo "| setting | why |"
    echo "|---|---|"
    postfix_settings | awk -F'|' '{ printf "| `%s` | %s |\n", $1, $2 }'
    echo
    echo "master.cf: Debian's services with chroot off and without the local/pipe transports; smtpd on \`127.0.0.1:$PF_PORT\`. Everything else is Postfix's default, including \`initial_destination_concurrency = 5\` (slow start), \`in_flow_delay = 1s\` (smtpd slows clients while its queue grows), \`smtp_destination_recipient_limit = 50\` (10 recipients go in one transaction) and per-message logging."
    if [ "$WITH_RINGMAIL" = 1 ]; then
        echo
        echo "## ringmail config"
        echo
        echo '```toml'
        cat "$WORK/ringmail.toml"
        echo '```'
    fi
    echo
    echo "## Commands and raw RESULT lines"
    echo
    echo '```'
    for i in "${!RUN_SYS[@]}"; do
        echo "# $((i + 1)) ${RUN_SYS[$i]}: ${RUN_CMD[$i]}"
        echo "${RUN_SMTP[$i]}"
        echo "${RUN_RELAY[$i]}"
    done
    echo '```'
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"
cat "$RESULT_FILE"
