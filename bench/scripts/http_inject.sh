#!/usr/bin/env bash
# http_inject.sh: HTTP injection throughput (POST /api/inject, 1 KB personalised messages in
# batches of 100 and 1,000) beside SMTP acceptance (ringmail-load), and the cost of /metrics:
# SMTP acceptance with and without a scrape every second.
#
# One ringmail (release build, fresh data dir, [http] on a loopback port with a token) serves
# every run. The runs alternate (smtp, smtp+scrape, http-100, http-1000, then again, PAIRS
# times); after each run the script waits until everything accepted is delivered, so every run
# starts with an empty queue. Every message is durable (fdatasync) before its 250 or before the
# HTTP call answers. HTTP calls are made by curl, CONCURRENCY at a time.
#
# Each measured run (and the drain after it) holds the shared benchmark lock (lib.sh).
# The work directory is kept afterwards (see smtp_accept.sh for why); KEEP_WORK=0 removes it.
# Writes bench/results/http-inject-<date>.md.
#
# Usage: bench/scripts/http_inject.sh [--runs PAIRS]
# Environment: TOTAL (20000 messages per run) SESSIONS (20) SIZE (1024) CONCURRENCY (4)
#              PER_CONNECTION (100) KEEP_WORK (1) RINGMAIL_LOG_LEVEL (warn)
#              RINGMAIL=/path/to/ringmail (use that binary instead of building one)
#              RINGMAIL_LOAD=/path/to/ringmail-load (likewise for the load generator)
# Smoke test (debug builds, tiny counts; the figures mean nothing):
#   cargo build --bins -p ringmail -p ringmail-bench
#   TOTAL=200 RINGMAIL=target/debug/ringmail RINGMAIL_LOAD=target/debug/ringmail-load \
#     KEEP_WORK=0 bench/scripts/http_inject.sh --runs 1
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

TOTAL=${TOTAL:-20000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-1024}
CONCURRENCY=${CONCURRENCY:-4}
PER_CONNECTION=${PER_CONNECTION:-100}
SPREAD=20
PAIRS=2
TOKEN=bench-token-0123456789abcdef
while [ $# -gt 0 ]; do
    case $1 in
        --runs) PAIRS=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
command -v curl >/dev/null || die "curl is needed (scripts/install-test-deps installs it)"
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

WORK=$(mktemp -d /tmp/ringmail-http-bench.XXXXXX)
chmod 755 "$WORK" # ringmail runs as server.user and must reach its data directory
MAIL=$WORK/ringmail-data/mail
SCRAPER_PID=
cleanup() {
    if [ -n "$SCRAPER_PID" ]; then kill "$SCRAPER_PID" 2>/dev/null || true; fi
    stop_all_started
    if [ "${KEEP_WORK:-1}" = 1 ]; then log "kept $WORK (remove it when nobody is measuring)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${RINGMAIL_LOAD:-}" ]; then LOAD=$RINGMAIL_LOAD; else build_load; fi
build_ringmail

SMTP_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$WORK/ringmail-data" "$MAIL"
write_ringmail_config "$WORK/ringmail.toml" "$WORK/ringmail-data" "$MAIL" "$SMTP_PORT" "$(free_port)"
cat >>"$WORK/ringmail.toml" <<CONF

[http]
listen = "127.0.0.1:$HTTP_PORT"
token = "$TOKEN"
max_requests_per_sec = 100000
CONF
give_to_ringmail_user "$WORK/ringmail-data" "$MAIL"
start_bg "$WORK/ringmail.log" "$RINGMAIL" serve --config "$WORK/ringmail.toml"
RINGMAIL_PID=$STARTED_PID
wait_listening "$HTTP_PORT" "$RINGMAIL_PID" ringmail || { cat "$WORK/ringmail.log" >&2; exit 1; }
log "ringmail (pid $RINGMAIL_PID): smtp 127.0.0.1:$SMTP_PORT, http 127.0.0.1:$HTTP_PORT"

# One request body per batch size: BATCH recipients u<n>@example.test (spread over SPREAD
# mailboxes), a ~SIZE-byte text with two substitutions per recipient.
make_body() {
    local batch=$1 file=$2
    python3 - "$batch" "$SIZE" "$SPREAD" >"$file" <<'PY'
import json, sys
batch, size, spread = (int(a) for a in sys.argv[1:4])
text = "Dear {{name}}, code {{code}}.\n" + ("x" * 71 + "\n") * max(0, (size - 300) // 72)
print(json.dumps({
    "from": "bench@sender.test",
    "recipients": [{"to": "u%d@example.test" % (i % spread + 1),
                    "vars": {"name": "User %d" % i, "code": "C%d" % i}} for i in range(batch)],
    "subject": "Bench {{code}}", "text": text}))
PY
}
make_body 100 "$WORK/batch-100.json"
make_body 1000 "$WORK/batch-1000.json"

delivered_count() {
    find "$MAIL" -path '*/Maildir/new/*' -type f 2>/dev/null | wc -l
}
EXPECTED=0
drain() {
    for _ in $(seq 1 300); do
        [ "$(delivered_count)" -ge "$EXPECTED" ] && return 0
        sleep 1
    done
    log "warning: only $(delivered_count) of $EXPECTED messages delivered after 5 minutes"
}
now() { date +%s.%N; }

declare -a ORDER=() RATES=() DETAILS=()

# SMTP acceptance with ringmail-load; with "scrape", /metrics is fetched every second meanwhile.
run_smtp() {
    local name=$1 out line accepted scrapes=0
    if [ "$name" = smtp+scrape ]; then
        ( while :; do curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/metrics"; sleep 1; done ) &
        SCRAPER_PID=$!
    fi
    out=$("$LOAD" smtp --server "127.0.0.1:$SMTP_PORT" --sessions "$SESSIONS" --size "$SIZE" \
        --per-connection "$PER_CONNECTION" --total "$TOTAL" --to 'u{n}@example.test' \
        --to-spread "$SPREAD" --duration-limit 300s 2>"$WORK/load-errors.txt") || log "$name: load reported errors"
    if [ -n "$SCRAPER_PID" ]; then kill "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; SCRAPER_PID=; scrapes=1; fi
    line=$(grep '^RESULT smtp ' <<<"$out" || echo "RESULT smtp failed")
    accepted=$(result_field "$line" accepted)
    EXPECTED=$(( EXPECTED + ${accepted:-0} ))
    ORDER+=("$name"); RATES+=("$(result_field "$line" rate)")
    if [ "$scrapes" = 1 ]; then line="$line (scraping /metrics every 1 s)"; fi
    DETAILS+=("$line")
}

# CALLS = TOTAL / BATCH calls of POST /api/inject, CONCURRENCY at a time.
run_http() {
    local batch=$1 calls start end accepted
    calls=$(( (TOTAL + batch - 1) / batch ))
    start=$(now)
    seq 1 "$calls" | xargs -P "$CONCURRENCY" -I{} curl -s -S --max-time 300 \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary "@$WORK/batch-$batch.json" "http://127.0.0.1:$HTTP_PORT/api/inject" \
        -o "$WORK/reply-{}.json"
    end=$(now)
    accepted=$(cat "$WORK"/reply-*.json | python3 -c 'import json,sys; print(sum(json.loads(l)["accepted"] for l in sys.stdin.read().replace("}\n{", "}\x00{").split("\x00") if l.strip()))')
    rm -f "$WORK"/reply-*.json
    EXPECTED=$(( EXPECTED + accepted ))
    ORDER+=("http-$batch")
    RATES+=("$(awk -v n="$accepted" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", n / (e - s) }')")
    DETAILS+=("http batch=$batch calls=$calls concurrency=$CONCURRENCY accepted=$accepted elapsed_s=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')")
}

measure() {
    bench_lock
    log "run $(( ${#ORDER[@]} + 1 )): $*"
    "$@"
    drain
    bench_unlock
}

for _ in $(seq 1 "$PAIRS"); do
    measure run_smtp smtp
    measure run_smtp smtp+scrape
    measure run_http 100
    measure run_http 1000
done

RESULT_FILE=$(results_file http-inject)
{
    echo "# HTTP injection and /metrics cost, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    host_info
    echo "- one ringmail, log level ${RINGMAIL_LOG_LEVEL:-warn}; every message durable before its 250 / before the HTTP answer; $TOTAL messages of ~$SIZE bytes per run, to u1..u$SPREAD@example.test (Maildir)"
    echo "- SMTP: ringmail-load, $SESSIONS sessions, $PER_CONNECTION messages per connection; HTTP: curl, $CONCURRENCY calls at a time, personalised (2 substitutions per recipient)"
    echo "- each run waits for full delivery before the next; run order: ${ORDER[*]}"
    echo
    echo "| run | kind | msg/s |"
    echo "|---|---|---|"
    for i in "${!ORDER[@]}"; do echo "| $((i + 1)) | ${ORDER[$i]} | ${RATES[$i]} |"; done
    echo
    for kind in smtp smtp+scrape http-100 http-1000; do
        rates=()
        for i in "${!ORDER[@]}"; do [ "${ORDER[$i]}" = "$kind" ] && rates+=("${RATES[$i]}"); done
        echo "- $kind median: $(median "${rates[@]}") msg/s"
    done
    echo
    echo '```'
    printf '%s\n' "${DETAILS[@]}"
    echo '```'
} >"$RESULT_FILE"
log "wrote $RESULT_FILE"
cat "$RESULT_FILE"
