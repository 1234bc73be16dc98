#!/usr/bin/env bash
# bench/soak.sh: steady traffic with churn against two relays sharing one
# Redis, then a check that the relays and Redis return to their idle state.
#
# It starts a redis-server and two keyrelay instances on free loopback
# ports (short room TTL and resume grace, so that what the load leaves
# behind expires soon after it ends), reads each relay's idle figures
# (goroutines, open file descriptors, heap in use, RSS) after a short
# warm-up load and the expiry of its rooms (so that the Redis client's
# connection pool and Pub/Sub connection exist in both readings), runs
# keyrelay-load for SOAK_DURATION with two loads at once: churn (joins,
# chats, leaves, drops without a close and resumes; peers split across the
# instances) and chat (steady messages), then waits for the rooms to expire
# and reads the figures again, with Redis's key and client counts and
# goroutine dumps from each relay's --debug-addr. Output: a Markdown table
# on stdout and everything in SOAK_OUT.
#
# Environment (all optional):
#   SOAK_DURATION    length of the load (default 10m)
#   SOAK_CONCURRENCY pairs in flight in each of the two loads (default 12)
#   SOAK_OUT         output directory (default bench/results/soak-YYYY-MM-DD)
#
# It exits non-zero when a load failed to run, when the loads' error rate
# exceeded 1%, or when a figure did not return to its idle baseline
# (goroutines exactly; fds exactly but for Redis pool connections, which
# are counted on the Redis side; heap in use after a forced collection
# within 4 MiB; Redis: no keys).
set -euo pipefail
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${SOAK_DURATION:-10m}
CONCURRENCY=${SOAK_CONCURRENCY:-12}
OUT=${SOAK_OUT:-bench/results/soak-$(date -u +%F)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	sleep 1
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '== %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

log "building"
go build -o "$TMP/keyrelay" ./cmd/keyrelay
go build -o "$TMP/keyrelay-load" ./cmd/keyrelay-load

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" --loglevel warning >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ $(redis-cli -p "$RP" ping 2>/dev/null) == PONG ]] && break; sleep 0.1; done

# Short TTLs and windows so that the load's leftovers (rooms of dropped
# peers waiting for a resume, the admission counters of rooms and of the
# one client address) expire within a minute of its end. The per-room join
# limit stays on (each pair's room is joined and resumed a few times); the
# per-IP limits are off, since every client here has one address.
RELAY_FLAGS=(--max-conns-per-ip -1 --joins-per-ip -1 --key-reuse-window 0 --frames-per-second 100000 --bytes-per-second 1073741824 --max-rooms -1 --log-level warn
	--room-ttl 20s --resume-grace 10s --join-window 15s --room-window 15s --redis-url "redis://127.0.0.1:$RP")
HTTP=() DEBUG=() URLS=""
for i in 1 2; do
	p=$(free_port)
	d=$(free_port)
	DEBUG+=("http://127.0.0.1:$d")
	"$TMP/keyrelay" --addr "127.0.0.1:$p" --debug-addr "127.0.0.1:$d" "${RELAY_FLAGS[@]}" >"$OUT/keyrelay-$i.log" 2>&1 &
	PIDS+=($!)
	HTTP+=("http://127.0.0.1:$p")
	URLS+=${URLS:+,}"ws://127.0.0.1:$p/v1/ws"
	for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$p/readyz" 2>/dev/null && break; sleep 0.1; done
done

# figures URL: "goroutines fds heap_inuse rss rooms" of a relay.
figures() {
	curl -fsS "$1/metrics" | awk '
		$1 == "go_goroutines" { g = $2 }
		$1 == "process_open_fds" { f = $2 }
		$1 == "go_memstats_heap_inuse_bytes" { h = $2 }
		$1 == "process_resident_memory_bytes" { r = $2 }
		$1 == "keyrelay_rooms" { n = $2 }
		END { printf "%d %d %d %d %d\n", g, f, h, r, n }'
}
rediskeys() { redis-cli -p "$RP" dbsize; }
redisclients() { redis-cli -p "$RP" info clients | awk -F: '/^connected_clients:/ { print $2 + 0 }'; }
# settle NAME: waits for every room to expire, then saves the figures.
settle() {
	for _ in $(seq 90); do
		[[ $(rediskeys) == 0 ]] && break
		sleep 2
	done
	sleep 5
	for i in 0 1; do
		# A heap profile with gc=1 runs a garbage collection first, so
		# that the heap figure read next is live memory, not garbage.
		curl -fsS -o "$OUT/$1-heap-$i.pprof" "${DEBUG[$i]}/debug/pprof/heap?gc=1"
		figures "${HTTP[$i]}" >"$OUT/$1-$i.txt"
		curl -fsS "${DEBUG[$i]}/debug/pprof/goroutine?debug=1" >"$OUT/$1-goroutines-$i.txt"
	done
	rediskeys >"$OUT/$1-redis.txt"
	redisclients >"$OUT/$1-redis-clients.txt"
}
# load NAME DURATION: the two loads at once, in the background; sets CHURN
# and CHAT.
load() {
	"$TMP/keyrelay-load" --url "$URLS" --scenario churn --pairs 0 --duration "$2" \
		--concurrency "$CONCURRENCY" --messages 4 --size 200 --max-error-rate 0.01 \
		--metrics-interval 5s --json "$OUT/$1-churn.json" >"$OUT/$1-churn.log" 2>&1 &
	CHURN=$!
	PIDS+=($CHURN)
	"$TMP/keyrelay-load" --url "$URLS" --scenario chat --pairs 0 --duration "$2" \
		--concurrency "$CONCURRENCY" --messages 50 --size 512 --message-rate 20 --max-error-rate 0.01 \
		--metrics-url none --json "$OUT/$1-chat.json" >"$OUT/$1-chat.log" 2>&1 &
	CHAT=$!
	PIDS+=($CHAT)
}

log "warm-up: 20s of the same load"
load warmup 20s
wait "$CHURN" "$CHAT" || true
settle before
{
	echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
	echo "nproc: $(nproc); cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "commit: $(git rev-parse HEAD)"
	echo "settings: duration=$DURATION concurrency=$CONCURRENCY (two loads)"
} >"$OUT/env.txt"

log "soak: $DURATION of churn and chat on $URLS"
load soak "$DURATION"
: >"$OUT/during.txt"
while kill -0 "$CHURN" 2>/dev/null || kill -0 "$CHAT" 2>/dev/null; do
	echo "$(date -u +%T) $(figures "${HTTP[0]}") | $(figures "${HTTP[1]}") | redis $(rediskeys)" >>"$OUT/during.txt"
	sleep 15
done
RC=0
wait "$CHURN" || RC=$?
wait "$CHAT" || RC=$((RC | $?))

log "load over; waiting for the rooms to expire"
settle after
redis-cli -p "$RP" --scan >"$OUT/after-redis-keys.txt" || true

ok=1
{
	echo "### Soak: $DURATION, two relays on one Redis, $(sed -n 's/^date: //p' "$OUT/env.txt")"
	echo
	echo "$(sed -n 's/^nproc: //p' "$OUT/env.txt") cores; commit $(git rev-parse --short HEAD)."
	for f in churn chat; do
		python3 - "$OUT/soak-$f.json" "$f" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
rt = s.get("latency_ms", {}).get("round_trip", {})
print(f"- {sys.argv[2]}: {s['pairs_completed']} pairs completed, {s['pairs_failed']} failed, "
      f"{s['messages']} messages, {s.get('resumes', 0)} resumes, {s['pairs_per_second']:.1f} pairs/s, "
      f"{s['messages_per_second']:.1f} messages/s, round trip p50 {rt.get('p50', 0):.2f} ms p99 {rt.get('p99', 0):.2f} ms, "
      f"errors {s['errors'] or 'none'}")
EOF
	done
	echo
	echo "| relay | figure | idle, after the warm-up | after the soak and the rooms' expiry |"
	echo "| --- | --- | ---: | ---: |"
	dfds=0
	for i in 0 1; do
		read -r bg bf bh br bn <"$OUT/before-$i.txt"
		read -r ag af ah ar an <"$OUT/after-$i.txt"
		# Goroutines from the profile (its "total"), which, unlike a
		# /metrics scrape, does not count the scrape's own connection.
		bg=$(awk 'NR == 1 { print $4 }' "$OUT/before-goroutines-$i.txt")
		ag=$(awk 'NR == 1 { print $4 }' "$OUT/after-goroutines-$i.txt")
		echo "| $((i + 1)) | goroutines (pprof) | $bg | $ag |"
		echo "| $((i + 1)) | open fds | $bf | $af |"
		echo "| $((i + 1)) | heap in use | $((bh / 1024)) KiB | $((ah / 1024)) KiB |"
		echo "| $((i + 1)) | RSS | $((br / 1048576)) MiB | $((ar / 1048576)) MiB |"
		echo "| $((i + 1)) | rooms (keyrelay_rooms) | $bn | $an |"
		((ag == bg && ah <= bh + 4 * 1048576)) || ok=0
		dfds=$((dfds + af - bf))
	done
	bc=$(cat "$OUT/before-redis-clients.txt") ac=$(cat "$OUT/after-redis-clients.txt")
	echo "| Redis | keys (DBSIZE) | $(cat "$OUT/before-redis.txt") | $(cat "$OUT/after-redis.txt") |"
	echo "| Redis | clients connected (the relays' pools and Pub/Sub; redis-cli's own included) | $bc | $ac |"
	[[ $(cat "$OUT/after-redis.txt") == 0 ]] || ok=0
	# Every fd the relays gained is a Redis client connection of their pools.
	((dfds == ac - bc)) || ok=0
	echo
	echo "Open fds gained by the relays: $dfds; Redis clients gained: $((ac - bc)) (they must be equal: every extra fd is a pooled Redis connection)."
	echo
	echo "Samples every 15 s during the load are in during.txt (goroutines fds heap rss rooms per relay, Redis keys)."
} | tee "$OUT/table.md"
if ((RC != 0)); then log "a load exited with status $RC (see $OUT/*.log)"; exit 1; fi
if ((ok == 0)); then log "a figure did not return to its idle baseline"; exit 1; fi
log "results in $OUT"
