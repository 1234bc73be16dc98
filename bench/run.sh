#!/usr/bin/env bash
# bench/run.sh: the relay's figures against the bare WebSocket library's
# (bench/baseline), measured on this machine in one run. See
# bench/README.md for what each figure means and how to read the table.
#
# Environment (all optional):
#   BENCH_DURATION     length of each measurement (default 20s)
#   BENCH_CONCURRENCY  pairs in flight for the handshake and upgrade runs (default 32)
#   BENCH_FORWARD_PAIRS pairs in flight for the forwarding runs (default 50)
#   BENCH_MESSAGES     round trips per pair in the forwarding runs (default 200)
#   BENCH_SIZE         bytes per message (default 256)
#   BENCH_IDLE_CONNS   idle connections held (default 10000)
#   BENCH_IDLE_HOLD    how long they are held, opening included (default BENCH_DURATION)
#   BENCH_OUT          output directory (default bench/results/YYYY-MM-DD, UTC)
#
# It exits non-zero when a measurement produced no result; a missed target
# is a finding, not a failure of the script.
set -euo pipefail

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-20s}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
FORWARD_PAIRS=${BENCH_FORWARD_PAIRS:-50}
MESSAGES=${BENCH_MESSAGES:-200}
SIZE=${BENCH_SIZE:-256}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_HOLD=${BENCH_IDLE_HOLD:-$DURATION}
OUT=${BENCH_OUT:-bench/results/$(date -u +%F)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d)
PIDS=() # every process started here, killed on exit
FAILED=0

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

# forget PID: drop a process that has ended from PIDS.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# stop PID...: stop processes started here (TERM, then KILL after 5 s).
stop() {
	local pid
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		forget "$pid"
	done
}

# measure NAME CMD...: runs a load program in the background (so that the
# traps kill it), its output in $OUT/NAME.log; the JSON is $OUT/NAME.json.
measure() {
	local name=$1 pid rc=0
	shift
	log "$name: $*"
	"$@" >"$OUT/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	if ((rc != 0)); then
		log "$name: exit status $rc (see $OUT/$name.log)"
		tail -n 3 "$OUT/$name.log" >&2 || true
	fi
	if [[ ! -s $OUT/$name.json ]]; then
		log "$name: no result"
		FAILED=1
	fi
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID: waits until URL answers 200, or fails if PID exits.
wait_http() {
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || { log "process $2 exited before $1 answered"; return 1; }
		sleep 0.1
	done
	log "$1 did not answer within 10s"
	return 1
}

# jv FILE PATH: a value of a JSON file by dotted path (.a.b), empty if
# missing.
jv() {
	[[ -s $1 ]] || return 0
	if command -v jq >/dev/null; then
		jq -r "$2 // empty" "$1"
	else
		python3 - "$1" "$2" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].lstrip(".").split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)
EOF
	fi
}

rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# Build everything into $TMP.
log "building into $TMP"
go build -o "$TMP/keyrelay" ./cmd/keyrelay
go build -o "$TMP/keyrelay-load" ./cmd/keyrelay-load
go build -o "$TMP/baseline" ./bench/baseline

# The machine and the code.
{
	echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
	echo "nproc: $(nproc)"
	echo "kernel: $(uname -r)"
	echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "go: $(go version)"
	echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (working tree has uncommitted changes)')"
	echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "settings: duration=$DURATION concurrency=$CONCURRENCY forward_pairs=$FORWARD_PAIRS messages=$MESSAGES size=$SIZE idle_conns=$IDLE_CONNS idle_hold=$IDLE_HOLD"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

RELAY_FLAGS=(--max-conns-per-ip -1 --joins-per-ip -1 --key-reuse-window 0 --frames-per-second 100000 --bytes-per-second 1073741824 --max-rooms -1 --log-level warn)

# start_servers: a baseline and a keyrelay (in memory) on free ports; sets
# BASE_PID, BASE_URL, RELAY_PID, RELAY_HTTP, RELAY_WS. $1 names the logs.
start_servers() {
	local p
	p=$(free_port)
	"$TMP/baseline" serve --addr "127.0.0.1:$p" >"$OUT/baseline-serve-$1.log" 2>&1 &
	BASE_PID=$!
	PIDS+=("$BASE_PID")
	BASE_URL="http://127.0.0.1:$p"
	p=$(free_port)
	"$TMP/keyrelay" --addr "127.0.0.1:$p" "${RELAY_FLAGS[@]}" >"$OUT/keyrelay-$1.log" 2>&1 &
	RELAY_PID=$!
	PIDS+=("$RELAY_PID")
	RELAY_HTTP="http://127.0.0.1:$p"
	RELAY_WS="ws://127.0.0.1:$p/v1/ws"
	wait_http "$BASE_URL/stats" "$BASE_PID"
	wait_http "$RELAY_HTTP/readyz" "$RELAY_PID"
}

# Throughput: upgrades and handshakes, then forwarding.
start_servers throughput
measure raw-upgrade "$TMP/baseline" load --url "$BASE_URL" --scenario upgrade \
	--pairs 0 --concurrency "$CONCURRENCY" --duration "$DURATION" --json "$OUT/raw-upgrade.json"
# The targets are read on relay-only handshakes (pool keys: the relay does
# all its handshake work, the generator skips its own Diffie-Hellman, which
# on 2 shared cores would otherwise be most of what is measured); the
# full-crypto runs, where each client generates, validates and derives as
# users do, are reported beside them.
for g in x25519 modp14; do
	measure "relay-handshake-$g" "$TMP/keyrelay-load" --url "$RELAY_WS" --scenario handshake --group "$g" \
		--client-crypto relay-only --key-pool 4096 \
		--pairs 0 --concurrency "$CONCURRENCY" --duration "$DURATION" --json "$OUT/relay-handshake-$g.json"
	measure "relay-handshake-$g-full" "$TMP/keyrelay-load" --url "$RELAY_WS" --scenario handshake --group "$g" \
		--pairs 0 --concurrency "$CONCURRENCY" --duration "$DURATION" --json "$OUT/relay-handshake-$g-full.json"
done
measure raw-forward "$TMP/baseline" load --url "$BASE_URL" --scenario forward \
	--pairs 0 --concurrency "$FORWARD_PAIRS" --duration "$DURATION" --messages "$MESSAGES" --size "$SIZE" \
	--json "$OUT/raw-forward.json"
measure relay-chat "$TMP/keyrelay-load" --url "$RELAY_WS" --scenario chat \
	--pairs 0 --concurrency "$FORWARD_PAIRS" --duration "$DURATION" --messages "$MESSAGES" --size "$SIZE" \
	--json "$OUT/relay-chat.json"
stop "$BASE_PID" "$RELAY_PID"

# sample_server PID KIND URL: prints "RSS goroutines connections" of the
# server process PID: RSS from /proc/PID/status, the others from the
# baseline's /stats (KIND baseline) or the relay's /metrics (KIND relay)
# at URL.
sample_server() {
	local pid=$1 kind=$2 url=$3 rss g c body
	rss=$(rss_bytes "$pid") || return 1
	if [[ $kind == baseline ]]; then
		body=$(curl -fsS "$url/stats") || return 1
		g=$(jq -r .goroutines <<<"$body" 2>/dev/null || python3 -c 'import json,sys; print(json.load(sys.stdin)["goroutines"])' <<<"$body")
		c=$(jq -r .connections <<<"$body" 2>/dev/null || python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])' <<<"$body")
	else
		body=$(curl -fsS "$url/metrics") || return 1
		g=$(awk '$1 == "go_goroutines" { print $2 }' <<<"$body")
		c=$(awk '$1 == "keyrelay_connections" { print $2 }' <<<"$body")
	fi
	echo "$rss ${g:-0} ${c:-0}"
}

# idle NAME KIND PID URL CMD...: runs the idle load CMD against the server
# PID, samples it before and while the connections are held, and writes
# $OUT/NAME-memory.json: the sample before, the held sample with the most
# connections (the latest of those), and the difference per connection.
idle() {
	local name=$1 kind=$2 pid=$3 url=$4 before held loadpid rc=0 b_rss b_g b_c h_rss h_g h_c
	shift 4
	sleep 1
	before=$(sample_server "$pid" "$kind" "$url") || before=""
	log "$name: $*"
	"$@" >"$OUT/$name.log" 2>&1 &
	loadpid=$!
	PIDS+=("$loadpid")
	: >"$OUT/$name-samples.txt"
	# Every 0.25 s while the load runs.
	while kill -0 "$loadpid" 2>/dev/null; do
		sample_server "$pid" "$kind" "$url" >>"$OUT/$name-samples.txt" || true
		sleep 0.25
	done
	wait "$loadpid" || rc=$?
	forget "$loadpid"
	((rc == 0)) || log "$name: exit status $rc (see $OUT/$name.log)"
	# The latest sample with the most connections.
	held=$(awk 'NF == 3 && $3 >= max { max = $3; line = $0 } END { print line }' "$OUT/$name-samples.txt")
	if [[ -z $held || -z $before ]]; then
		log "$name: no memory sample"
		FAILED=1
		return
	fi
	read -r b_rss b_g b_c <<<"$before"
	read -r h_rss h_g h_c <<<"$held"
	awk -v br="$b_rss" -v bg="$b_g" -v bc="$b_c" -v hr="$h_rss" -v hg="$h_g" -v hc="$h_c" -v kind="$kind" 'BEGIN {
		n = hc - bc
		printf "{\n  \"server\": \"%s\",\n  \"before\": {\"rss_bytes\": %d, \"goroutines\": %d, \"connections\": %d},\n", kind, br, bg, bc
		printf "  \"held\": {\"rss_bytes\": %d, \"goroutines\": %d, \"connections\": %d},\n", hr, hg, hc
		printf "  \"held_connections\": %d,\n", n
		printf "  \"rss_bytes_per_connection\": %.1f,\n", (n > 0 ? (hr - br) / n : 0)
		printf "  \"goroutines_per_connection\": %.3f\n}\n", (n > 0 ? (hg - bg) / n : 0)
	}' >"$OUT/$name-memory.json"
}

# Idle memory, on fresh servers (a heap grown by the runs above would hide
# what connections cost).
start_servers idle
idle raw-idle baseline "$BASE_PID" "$BASE_URL" "$TMP/baseline" load --url "$BASE_URL" --scenario idle \
	--connections "$IDLE_CONNS" --concurrency "$CONCURRENCY" --duration "$IDLE_HOLD" --json "$OUT/raw-idle.json"
idle relay-idle relay "$RELAY_PID" "$RELAY_HTTP" "$TMP/keyrelay-load" --url "$RELAY_WS" --scenario idle \
	--connections "$IDLE_CONNS" --concurrency "$CONCURRENCY" --duration "$IDLE_HOLD" --json "$OUT/relay-idle.json"
stop "$BASE_PID" "$RELAY_PID"

# redis_phase: two relays sharing a Redis, the pairs split across them.
redis_phase() {
	local p q i urls pid r_pids=()
	p=$(free_port)
	redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
		--dir "$TMP" --loglevel warning >"$OUT/redis.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	r_pids+=("$pid")
	for _ in $(seq 100); do
		[[ $(redis-cli -p "$p" ping 2>/dev/null) == PONG ]] && break
		sleep 0.1
	done
	for i in 1 2; do
		q=$(free_port)
		"$TMP/keyrelay" --addr "127.0.0.1:$q" "${RELAY_FLAGS[@]}" --redis-url "redis://127.0.0.1:$p" \
			>"$OUT/keyrelay-redis-$i.log" 2>&1 &
		pid=$!
		PIDS+=("$pid")
		r_pids+=("$pid")
		wait_http "http://127.0.0.1:$q/readyz" "$pid" || { stop "${r_pids[@]}"; return 1; }
		urls+=${urls:+,}"ws://127.0.0.1:$q/v1/ws"
	done
	measure redis-handshake-x25519 "$TMP/keyrelay-load" --url "$urls" --scenario handshake --group x25519 \
		--client-crypto relay-only --key-pool 4096 --pairs 0 --concurrency "$CONCURRENCY" --duration "$DURATION" --json "$OUT/redis-handshake-x25519.json"
	measure redis-chat "$TMP/keyrelay-load" --url "$urls" --scenario chat \
		--pairs 0 --concurrency "$FORWARD_PAIRS" --duration "$DURATION" --messages "$MESSAGES" --size "$SIZE" \
		--json "$OUT/redis-chat.json"
	stop "${r_pids[@]}"
}

if command -v redis-server >/dev/null; then
	redis_phase || { log "the Redis phase failed"; FAILED=1; }
else
	log "redis-server not installed: the two-instance figures are skipped"
	FAILED=1
fi

# The table.
f1() { awk -v x="$1" 'BEGIN { if (x == "") print "n/a"; else printf "%.1f", x }'; }
f2() { awk -v x="$1" 'BEGIN { if (x == "") print "n/a"; else printf "%.2f", x }'; }
kb() { awk -v x="$1" 'BEGIN { if (x == "") print "n/a"; else printf "%.1f KB", x / 1024 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.0f%%", 100 * a / b }'; }
# check EXPR VALUES...: "met" if the awk expression over a and b (and c)
# holds, "missed" if not, "n/a" if a value is missing.
check() {
	awk -v a="${2:-}" -v b="${3:-}" -v c="${4:-}" -v n="$#" "BEGIN {
		if (a == \"\" || (n > 2 && b == \"\") || (n > 3 && c == \"\")) { print \"n/a\"; exit }
		print (($1) ? \"met\" : \"missed\")
	}"
}

R=$OUT
raw_up=$(jv "$R/raw-upgrade.json" .pairs_per_second)
hs_x=$(jv "$R/relay-handshake-x25519.json" .pairs_per_second)
hs_m=$(jv "$R/relay-handshake-modp14.json" .pairs_per_second)
hs_xf=$(jv "$R/relay-handshake-x25519-full.json" .pairs_per_second)
hs_mf=$(jv "$R/relay-handshake-modp14-full.json" .pairs_per_second)
raw_mps=$(jv "$R/raw-forward.json" .messages_per_second)
chat_mps=$(jv "$R/relay-chat.json" .messages_per_second)
raw_p50=$(jv "$R/raw-forward.json" .latency_ms.round_trip.p50)
chat_p50=$(jv "$R/relay-chat.json" .latency_ms.round_trip.p50)
raw_p99=$(jv "$R/raw-forward.json" .latency_ms.round_trip.p99)
chat_p99=$(jv "$R/relay-chat.json" .latency_ms.round_trip.p99)
raw_idle=$(jv "$R/raw-idle-memory.json" .rss_bytes_per_connection)
relay_idle=$(jv "$R/relay-idle-memory.json" .rss_bytes_per_connection)
raw_idle_n=$(jv "$R/raw-idle-memory.json" .held_connections)
relay_idle_n=$(jv "$R/relay-idle-memory.json" .held_connections)
raw_gor=$(jv "$R/raw-idle-memory.json" .goroutines_per_connection)
relay_gor=$(jv "$R/relay-idle-memory.json" .goroutines_per_connection)
redis_hs=$(jv "$R/redis-handshake-x25519.json" .pairs_per_second)
redis_mps=$(jv "$R/redis-chat.json" .messages_per_second)

{
	echo "### keyrelay against the bare WebSocket library, $(sed -n 's/^date: //p' "$OUT/env.txt")"
	echo
	echo "$(sed -n 's/^cpu: //p' "$OUT/env.txt"), $(nproc) cores, kernel $(uname -r), $(go version | awk '{ print $3 }'), commit $(sed -n 's/^commit: //p' "$OUT/env.txt")."
	echo "Each figure over $DURATION; $CONCURRENCY pairs in flight for upgrades and handshakes, $FORWARD_PAIRS for forwarding"
	echo "($MESSAGES round trips of $SIZE bytes per pair); idle: $IDLE_CONNS connections held for $IDLE_HOLD."
	echo
	echo "| figure | relay | baseline | relay/baseline | target | result |"
	echo "| --- | ---: | ---: | ---: | --- | --- |"
	echo "| handshake pairs/s, x25519, relay-only (baseline: bare upgrade pairs/s) | $(f1 "$hs_x") | $(f1 "$raw_up") | $(pct "$hs_x" "$raw_up") | ≥ 2000/s and ≥ 60% | $(check 'a >= 2000 && a >= 0.6 * b' "$hs_x" "$raw_up") |"
	echo "| handshake pairs/s, modp14, relay-only (baseline: bare upgrade pairs/s) | $(f1 "$hs_m") | $(f1 "$raw_up") | $(pct "$hs_m" "$raw_up") | ≥ 1500/s and ≥ 60% | $(check 'a >= 1500 && a >= 0.6 * b' "$hs_m" "$raw_up") |"
	echo "| handshake pairs/s, x25519, full client crypto | $(f1 "$hs_xf") | $(f1 "$raw_up") | $(pct "$hs_xf" "$raw_up") | — | — |"
	echo "| handshake pairs/s, modp14, full client crypto | $(f1 "$hs_mf") | $(f1 "$raw_up") | $(pct "$hs_mf" "$raw_up") | — | — |"
	echo "| forwarded messages/s, $FORWARD_PAIRS pairs | $(f1 "$chat_mps") | $(f1 "$raw_mps") | $(pct "$chat_mps" "$raw_mps") | ≥ 70% | $(check 'a >= 0.7 * b' "$chat_mps" "$raw_mps") |"
	echo "| round trip p99 (ms), $FORWARD_PAIRS pairs | $(f2 "$chat_p99") | $(f2 "$raw_p99") | $(pct "$chat_p99" "$raw_p99") | ≤ 150% (1.5×) | $(check 'a <= 1.5 * b' "$chat_p99" "$raw_p99") |"
	echo "| round trip p50 (ms), $FORWARD_PAIRS pairs | $(f2 "$chat_p50") | $(f2 "$raw_p50") | $(pct "$chat_p50" "$raw_p50") | — | — |"
	echo "| server RSS per idle connection ($relay_idle_n relay, $raw_idle_n bare) | $(kb "$relay_idle") | $(kb "$raw_idle") | $(pct "$relay_idle" "$raw_idle") | ≤ 12 KB | $(check 'a <= 12 * 1024' "$relay_idle") |"
	echo "| server goroutines per idle connection | $(f2 "$relay_gor") | $(f2 "$raw_gor") | $(pct "$relay_gor" "$raw_gor") | — | — |"
	echo "| 2 instances on Redis: handshake pairs/s, x25519, relay-only (baseline: 1 instance in memory) | $(f1 "$redis_hs") | $(f1 "$hs_x") | $(pct "$redis_hs" "$hs_x") | ≥ 50% | $(check 'a >= 0.5 * b' "$redis_hs" "$hs_x") |"
	echo "| 2 instances on Redis: messages/s (baseline: 1 instance in memory) | $(f1 "$redis_mps") | $(f1 "$chat_mps") | $(pct "$redis_mps" "$chat_mps") | ≥ 50% | $(check 'a >= 0.5 * b' "$redis_mps" "$chat_mps") |"
	echo
	echo "Failed pairs (or connections) per run:"
	echo
	for f in "$R"/raw-upgrade.json "$R"/relay-handshake-*.json "$R"/raw-forward.json "$R"/relay-chat.json \
		"$R"/raw-idle.json "$R"/relay-idle.json "$R"/redis-*.json; do
		[[ -s $f ]] || continue
		echo "- $(basename "$f" .json): $(jv "$f" .pairs_failed) of $(jv "$f" .pairs_attempted)$(
			if command -v jq >/dev/null; then jq -r 'if (.errors | length) > 0 then " (" + ([.errors | to_entries[] | "\(.key) \(.value)"] | join(", ")) + ")" else "" end' "$f"; fi
		)"
	done
} | tee "$OUT/table.md"

log "results in $OUT"
exit "$FAILED"
