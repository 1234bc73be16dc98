#!/usr/bin/env bash
# bench/scale.sh: how the relay scales out on Redis, on loopback. Three
# parts, Markdown on stdout (also in OUT/report.md), raw data in OUT.
#
# 1. Two instances on one Redis against one in memory. ROUNDS times,
#    alternating (a) and (b), each time with fresh processes:
#    (a) one relay on the memory store;
#    (b) a redis-server and two relays sharing it, keyrelay-load given
#        both URLs, so that the two peers of every pair are on different
#        relays (pair i: A on URL i mod 2, B on URL i+1 mod 2), as
#        bench/run.sh and bench/soak.sh do.
#    In each: HS_PAIRS pairs of the handshake scenario, HS_CONCURRENCY in
#    flight; then CHAT_PAIRS pairs of the chat scenario, all in flight at
#    once, each CHAT_MESSAGES round trips (ping-pong) of SIZE bytes.
#    Around each load it reads the relays' CPU (utime + stime in
#    /proc/PID/stat, summed over the relays) and Redis's (INFO cpu,
#    used_cpu_user + used_cpu_sys) and divides by the operations: per
#    handshake; per message (both ways counted) once the chat pairs' own
#    handshakes are taken out at the same round's cost per handshake, as
#    bench/redis_cost.sh does. Both include what the relays do in the
#    background meanwhile (each relay's sweeper runs every second). Every
#    figure is the median over the rounds; b/a is b's median over a's.
# 2. Spread over shards. For each N in SHARDS: a Redis Cluster of N
#    masters without replicas on free loopback ports (redis-cli --cluster
#    create, which wants at least 3 masters; for 1 and 2 the script
#    assigns the same slot ranges itself, with CLUSTER MEET and
#    ADDSLOTSRANGE), one relay on it, CONFIG RESETSTAT on every master,
#    then ROOMS pairs of the handshake scenario. Each pair leaves a room
#    in Redis for its members' resume grace (2 min, see
#    bench/redis_cost.sh); right after the run the script counts, on each
#    master, the room hashes (keyrelay:{TAG}:room:ID; not the indexes
#    keyrelay:{TAG}:rooms, nor the admission limits' keyrelay:limits:
#    keys), the partitions (their room indexes) and the commands it ran
#    (INFO commandstats: all calls, EVALSHA calls; scripts' own commands
#    count in "all"). Per master: rooms, their share, its deviation from
#    the even share (1/N), EVALSHA and its share; then the largest
#    deviation.
# 3. One operation. On a fresh cluster of CHECK_SHARDS masters, after a
#    warm-up that loads the scripts on every master: with
#    MONITOR on every master and after CONFIG RESETSTAT, an idle window
#    of IDLE_SECONDS (the relay's background work alone), then a handshake
#    of 1 pair, then a chat of 1 pair with CHECK_MESSAGES round trips.
#    INFO commandstats alone cannot say which master a room's scripts
#    ran on: the relay's sweeper runs scripts on every partition every
#    second (the census of rooms and bytes, the ledger sweep), and the
#    instance lease. MONITOR shows each script's keys, so the script
#    sorts them: scripts on the test's rooms (key P:room:ID), on the
#    per-source byte counter (keyrelay:src:{SOURCE}), on admission-limit
#    keys (keyrelay:limits:), and the background (census, ledger sweep,
#    lease, other). It reports, per master, commandstats and these
#    classes, and how many masters ran each room's scripts.
#
# Every relay lifts the per-client limits as redis_cost.sh does (all
# clients are 127.0.0.1) and logs at warn; the report ends with the
# relays' log lines, if any. Everything runs on 127.0.0.1 and is killed
# on exit, also on failure or Ctrl-C. With the defaults it takes about 5
# minutes on 2 cores.
#
# Environment (all optional):
#   QUICK           if set, a quick check: ROUNDS=1, HS_PAIRS=300,
#                   CHAT_MESSAGES=60, ROOMS=600, SHARDS="1 3" (each still
#                   overridable)
#   ROUNDS          rounds of part 1, a then b each (default 3)
#   HS_PAIRS        handshake pairs per run of part 1 (default 2000)
#   HS_CONCURRENCY  handshake pairs in flight, parts 1 and 2 (default 20)
#   CHAT_PAIRS      chat pairs, all in flight (default 50)
#   CHAT_MESSAGES   round trips per chat pair (default 500: about 10 s in
#                   memory on 2 cores)
#   SIZE            bytes per message (default 256)
#   CLIENT_CRYPTO   keyrelay-load --client-crypto of the handshake runs
#                   (default relay-only: the clients skip their own
#                   Diffie-Hellman, which would otherwise take the relays'
#                   cores; see bench/README.md). The chat runs are always
#                   full: they need the shared key.
#   SHARDS          cluster sizes of part 2 (default "1 2 3")
#   ROOMS           handshake pairs (rooms) per cluster (default 3000)
#   CHECK_SHARDS    masters of part 3's cluster (default 3; 0 skips it)
#   CHECK_MESSAGES  round trips of part 3's chat pair (default 5)
#   IDLE_SECONDS    part 3's idle window (default 3)
#   CHECK_WARMUP    part 3's warm-up chat pairs, before the windows, so
#                   that every master has the scripts (default 30)
#   OUT             output directory (default $TMPDIR/keyrelay-scale-DATE)
#   SUMMARY_ONLY    if set, only summarise the run already in OUT
# OUT keeps env.txt, cpu.tsv (per load: the relays' and Redis's CPU
# seconds), every load's NAME.json and NAME.log, shardsN.tsv (per master:
# port, rooms, partitions with rooms, Redis CPU seconds), *-slots.txt,
# *-commandstats.txt, check-*-monitor.txt, the servers' logs and
# report.md. It exits non-zero if a process did not come up or a load
# left no summary, not for a figure (the report says what it saw).
# shellcheck source=bench/lib.sh disable=SC1091 # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"
bench_init scale

CMDLINE="bench/scale.sh${*:+ $*}"
if [ -n "${QUICK:-}" ]; then
	ROUNDS=${ROUNDS:-1} HS_PAIRS=${HS_PAIRS:-300} CHAT_MESSAGES=${CHAT_MESSAGES:-60}
	ROOMS=${ROOMS:-600} SHARDS=${SHARDS:-1 3}
fi
ROUNDS=${ROUNDS:-3}
HS_PAIRS=${HS_PAIRS:-2000}
HS_CONCURRENCY=${HS_CONCURRENCY:-20}
CHAT_PAIRS=${CHAT_PAIRS:-50}
CHAT_MESSAGES=${CHAT_MESSAGES:-500}
SIZE=${SIZE:-256}
CLIENT_CRYPTO=${CLIENT_CRYPTO:-relay-only}
SHARDS=${SHARDS:-1 2 3}
ROOMS=${ROOMS:-3000}
CHECK_SHARDS=${CHECK_SHARDS:-3}
CHECK_MESSAGES=${CHECK_MESSAGES:-5}
IDLE_SECONDS=${IDLE_SECONDS:-3}
CHECK_WARMUP=${CHECK_WARMUP:-30}
for v in ROUNDS HS_PAIRS HS_CONCURRENCY CHAT_PAIRS CHAT_MESSAGES SIZE ROOMS CHECK_SHARDS CHECK_MESSAGES IDLE_SECONDS CHECK_WARMUP; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "scale.sh: $v must be a whole number" >&2; exit 2; }
done
for n in $SHARDS; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "scale.sh: SHARDS must list whole numbers of masters" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The relays' flags: per-client limits lifted as in redis_cost.sh.
LIFTED=(--max-conns-per-ip -1 --max-accept-per-ip -1 --joins-per-ip -1 --joins-per-room -1 --rooms-per-ip -1
	--key-reuse-window 0 --frames-per-second 100000 --bytes-per-second 1073741824 --max-rooms -1 --log-level warn)
HS_ARGS=(--scenario handshake --pairs "$HS_PAIRS" --concurrency "$HS_CONCURRENCY" --client-crypto "$CLIENT_CRYPTO")
CHAT_ARGS=(--scenario chat --pairs "$CHAT_PAIRS" --concurrency "$CHAT_PAIRS" --messages "$CHAT_MESSAGES" --size "$SIZE"
	--timeout 10m)

log() { printf '[%s] %s\n' "$(date -u +%T)" "$*" >&2; }

# stop PID...: SIGTERM, SIGKILL after 10 s, then forget.
stop() {
	local pid
	for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		forget "$pid"
	done
}

# port: a free 127.0.0.1 port this script has not handed out yet.
declare -A USED_PORTS
port() {
	local p
	for _ in $(seq 20); do
		p=$(free_port)
		[ -z "${USED_PORTS[$p]:-}" ] && break
	done
	USED_PORTS[$p]=1
	echo "$p"
}

# redis_wait PORT PID: waits for PONG (10 s at most).
redis_wait() {
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return
		kill -0 "$2" 2>/dev/null || die "redis-server on port $1 exited at start; see $OUT/*.log"
		sleep 0.1
	done
	die "redis-server on port $1 did not answer"
}

# relay_up LOG FLAG...: relay_start (lib.sh) with the lifted limits, then
# waits for /readyz (with Redis: its store is reachable). RELAY, PORT, URL.
relay_up() {
	local log=$1
	shift
	RELAY_LOG=$log relay_start "$@" "${LIFTED[@]}"
	for _ in $(seq 150); do
		curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$PORT/readyz" 2>/dev/null && return
		relay_alive || die "relay exited at start; see $OUT/$log"
		sleep 0.1
	done
	die "relay not ready within 15 s; see $OUT/$log"
}

# ticks PID...: the CPU clock ticks (user + system) the PIDs used so far.
ticks() {
	local p t=0
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo "$t"
}

# redis_cpu PORT: the CPU seconds redis-server used so far.
redis_cpu() {
	redis-cli -p "$1" INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f\n", s}'
}

# load NAME ARGS...: keyrelay-load in the background (so that the traps
# kill it), waited for; its summary in OUT/NAME.json, its output in
# OUT/NAME.log. Failed pairs are in the summary, not the exit status.
load() {
	local name=$1 pid
	shift
	"$TMP/keyrelay-load" --metrics-url none --max-error-rate 1 --json "$OUT/$name.json" "$@" >"$OUT/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || log "$name: keyrelay-load exited non-zero; see $OUT/$name.log"
	forget "$pid"
	[ -s "$OUT/$name.json" ] || die "$name: no summary; see $OUT/$name.log"
}

# measure NAME ARGS...: load NAME ARGS with the relays' (MEAS_PIDS) and
# Redis's (MEAS_REDIS, a port, or empty) CPU read around it: a line
# "NAME relay-seconds redis-seconds" in OUT/cpu.tsv.
measure() {
	local name=$1 t0 t1 r0=nan r1=nan
	shift
	log "$name"
	[ -z "$MEAS_REDIS" ] || r0=$(redis_cpu "$MEAS_REDIS")
	t0=$(ticks "${MEAS_PIDS[@]}")
	load "$name" "$@"
	t1=$(ticks "${MEAS_PIDS[@]}")
	[ -z "$MEAS_REDIS" ] || r1=$(redis_cpu "$MEAS_REDIS")
	echo "$name $(awk -v a="$t0" -v b="$t1" -v k="$TCK" 'BEGIN {printf "%.4f", (b - a) / k}') \
$(awk -v a="$r0" -v b="$r1" 'BEGIN {if (a == "nan") print "nan"; else printf "%.4f", b - a}')" >>"$OUT/cpu.tsv"
}

# round_a R, round_b R: part 1's two set-ups.
round_a() {
	relay_up "r$1-a-relay.log"
	MEAS_PIDS=("$RELAY") MEAS_REDIS=
	measure "r$1-a-handshake" --url "$URL" "${HS_ARGS[@]}"
	measure "r$1-a-chat" --url "$URL" "${CHAT_ARGS[@]}"
	stop "$RELAY"
}
round_b() {
	local rp rpid urls="" relays=() i
	rp=$(port)
	redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" --logfile "$OUT/r$1-b-redis.log" &
	rpid=$!
	PIDS+=("$rpid")
	redis_wait "$rp" "$rpid"
	for i in 1 2; do
		relay_up "r$1-b-relay$i.log" --redis-url "redis://127.0.0.1:$rp"
		relays+=("$RELAY")
		urls+=${urls:+,}$URL
	done
	MEAS_PIDS=("${relays[@]}") MEAS_REDIS=$rp
	measure "r$1-b-handshake" --url "$urls" "${HS_ARGS[@]}"
	measure "r$1-b-chat" --url "$urls" "${CHAT_ARGS[@]}"
	stop "${relays[@]}" "$rpid"
}

# cluster_up NAME N: a Redis Cluster of N masters, no replicas, each with
# its log in OUT/NAME-nodeI.log; waits until every node says
# cluster_state:ok and knows all N. Sets CPORTS, CPIDS and CLUSTER_URL (the
# relay's --redis-url); writes OUT/NAME-slots.txt ("port slot-ranges" per
# master).
cluster_up() {
	local name=$1 n=$2 i p bus dir addrs=() ok
	CPORTS=() CPIDS=()
	for ((i = 1; i <= n; i++)); do
		p=$(port)
		bus=$(port) # the bus port is given: port + 10000 may not exist
		dir=$TMP/$name-$i
		mkdir -p "$dir"
		redis-server --port "$p" --cluster-port "$bus" --bind 127.0.0.1 --cluster-enabled yes \
			--cluster-config-file "$dir/nodes.conf" --dir "$dir" --save "" --appendonly no \
			--logfile "$OUT/$name-node$i.log" &
		CPIDS+=("$!")
		PIDS+=("$!")
		CPORTS+=("$p")
		BUS[$p]=$bus
		addrs+=("127.0.0.1:$p")
	done
	for ((i = 0; i < n; i++)); do redis_wait "${CPORTS[$i]}" "${CPIDS[$i]}"; done
	if ((n >= 3)); then
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$OUT/$name-create.log" 2>&1 ||
			die "redis-cli --cluster create failed; see $OUT/$name-create.log"
	else
		# redis-cli --cluster create refuses fewer than 3 masters: the
		# same even ranges (its arithmetic), assigned by hand.
		i=0
		while read -r first last; do
			redis-cli -p "${CPORTS[$i]}" CLUSTER ADDSLOTSRANGE "$first" "$last" >/dev/null
			((i > 0)) && redis-cli -p "${CPORTS[0]}" CLUSTER MEET 127.0.0.1 "${CPORTS[$i]}" "${BUS[${CPORTS[$i]}]}" >/dev/null
			i=$((i + 1))
		done < <(awk -v n="$n" 'BEGIN {per = 16384 / n; first = 0; cursor = 0
			for (i = 0; i < n; i++) { last = int(cursor + per - 1 + 0.5); if (last > 16383 || i == n - 1) last = 16383
				print first, last; first = last + 1; cursor += per } }')
	fi
	for _ in $(seq 300); do
		ok=1
		for p in "${CPORTS[@]}"; do
			redis-cli -p "$p" CLUSTER INFO | tr -d '\r' | awk -v n="$n" -F: '
				$1 == "cluster_state" && $2 == "ok" {s = 1}
				$1 == "cluster_known_nodes" && $2 == n {k = 1}
				$1 == "cluster_slots_ok" && $2 == 16384 {o = 1}
				END {exit !(s && k && o)}' || ok=0
		done
		((ok)) && break
		sleep 0.1
	done
	((ok)) || die "cluster $name not ok within 30 s; see $OUT/$name-*.log"
	for p in "${CPORTS[@]}"; do
		echo "$p $(redis-cli -p "$p" CLUSTER NODES | awk '/myself/ {for (i = 9; i <= NF; i++) printf "%s%s", $i, (i < NF ? "," : "")}')"
	done >"$OUT/$name-slots.txt"
	CLUSTER_URL="redis://127.0.0.1:${CPORTS[0]}?cluster=true"
	for ((i = 1; i < n; i++)); do CLUSTER_URL+="&addr=127.0.0.1:${CPORTS[$i]}"; done
}
declare -A BUS

# resetstat: CONFIG RESETSTAT on every master of the cluster.
resetstat() {
	local p
	for p in "${CPORTS[@]}"; do redis-cli -p "$p" CONFIG RESETSTAT >/dev/null; done
}

# commandstats NAME: every master's INFO commandstats in
# OUT/NAME-nodeI-commandstats.txt.
commandstats() {
	local i
	for ((i = 0; i < ${#CPORTS[@]}; i++)); do
		redis-cli -p "${CPORTS[$i]}" INFO commandstats | tr -d '\r' >"$OUT/$1-node$((i + 1))-commandstats.txt"
	done
}

# spread N: part 2 for a cluster of N masters. OUT/shardsN.tsv: per
# master "port rooms partitions cpu-seconds".
spread() {
	local n=$1 name=shards$1 i p cpu0=()
	log "$name: a cluster of $n masters"
	cluster_up "$name" "$n"
	relay_up "$name-relay.log" --redis-url "$CLUSTER_URL"
	sleep 2 # the relay's first sweeps
	resetstat
	for p in "${CPORTS[@]}"; do cpu0+=("$(redis_cpu "$p")"); done
	log "$name: $ROOMS handshakes"
	load "$name-handshake" --url "$URL" --scenario handshake --pairs "$ROOMS" --concurrency "$HS_CONCURRENCY" \
		--client-crypto "$CLIENT_CRYPTO"
	commandstats "$name"
	for ((i = 0; i < n; i++)); do
		p=${CPORTS[$i]}
		echo "$p $(redis-cli -p "$p" --scan --pattern 'keyrelay:{*}:room:*' | grep -cE '^keyrelay:\{[^}]+\}:room:[^:]+$') \
$(redis-cli -p "$p" --scan --pattern 'keyrelay:{*}:rooms' | grep -cE '^keyrelay:\{[^}]+\}:rooms$') \
$(awk -v a="${cpu0[$i]}" -v b="$(redis_cpu "$p")" 'BEGIN {printf "%.4f", b - a}')"
	done >"$OUT/$name.tsv"
	stop "$RELAY" "${CPIDS[@]}"
}

# monitor_start, monitor_stop NAME: MONITOR on every master, into
# OUT/NAME-nodeI-monitor.txt.
MONITORS=()
monitor_start() {
	local i
	MONITORS=()
	for ((i = 0; i < ${#CPORTS[@]}; i++)); do
		redis-cli -p "${CPORTS[$i]}" MONITOR >"$OUT/$1-node$((i + 1))-monitor.txt" 2>&1 &
		MONITORS+=("$!")
		PIDS+=("$!")
	done
	sleep 0.3 # MONITOR is on before the load starts
}
monitor_stop() {
	sleep 0.3 # the last lines are written out
	stop "${MONITORS[@]}"
}

# check: part 3, on a cluster of CHECK_SHARDS masters.
check() {
	local n=$CHECK_SHARDS name=check t0 phase p
	log "$name: one operation on a cluster of $n masters"
	cluster_up "$name" "$n"
	relay_up "$name-relay.log" --redis-url "$CLUSTER_URL"
	# A warm-up, so that every master has every script (the first call of
	# a script on a master is an EVALSHA refused with NOSCRIPT, then an
	# EVAL): CHECK_WARMUP chat pairs, in rooms spread over the masters.
	load "$name-warmup" --url "$URL" --scenario chat --pairs "$CHECK_WARMUP" --concurrency 10 --messages 2 --size "$SIZE"
	sleep 2
	for phase in idle handshake chat; do
		# MONITOR is on first; the window it reports is that of the
		# commandstats: from an ECHO in the same transaction as each
		# master's RESETSTAT to the INFO that reads them (both show in
		# MONITOR).
		monitor_start "$name-$phase"
		t0=$(date +%s.%N)
		for p in "${CPORTS[@]}"; do
			printf 'MULTI\nCONFIG RESETSTAT\nECHO keyrelay-scale-start\nEXEC\n' | redis-cli -p "$p" >/dev/null
		done
		case $phase in
		idle) sleep "$IDLE_SECONDS" ;;
		handshake) load "$name-handshake" --url "$URL" --scenario handshake --pairs 1 --concurrency 1 --client-crypto "$CLIENT_CRYPTO" ;;
		chat) load "$name-chat" --url "$URL" --scenario chat --pairs 1 --concurrency 1 --messages "$CHECK_MESSAGES" --size "$SIZE" ;;
		esac
		commandstats "$name-$phase"
		echo "$phase $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')" >>"$OUT/$name-windows.txt"
		monitor_stop
	done
	stop "$RELAY" "${CPIDS[@]}"
}

run_all() {
	local r n start
	start=$(date +%s)
	rm -f "$OUT"/*.json "$OUT"/*.tsv "$OUT"/*.log "$OUT"/*.txt
	log "building into $TMP; output in $OUT"
	bench_build
	{
		echo "command $CMDLINE"
		echo "date $(date -u '+%F %T UTC')"
		echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
		echo "cpus $(nproc)"
		echo "cpu_model $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
		echo "redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
		echo "go $("$GO" env GOVERSION)"
		echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "settings ROUNDS=$ROUNDS HS_PAIRS=$HS_PAIRS HS_CONCURRENCY=$HS_CONCURRENCY CHAT_PAIRS=$CHAT_PAIRS CHAT_MESSAGES=$CHAT_MESSAGES SIZE=$SIZE CLIENT_CRYPTO=$CLIENT_CRYPTO SHARDS=\"$SHARDS\" ROOMS=$ROOMS CHECK_SHARDS=$CHECK_SHARDS CHECK_MESSAGES=$CHECK_MESSAGES IDLE_SECONDS=$IDLE_SECONDS CHECK_WARMUP=$CHECK_WARMUP"
	} >"$OUT/env.txt"
	: >"$OUT/cpu.tsv"
	for ((r = 1; r <= ROUNDS; r++)); do
		round_a "$r"
		round_b "$r"
	done
	for n in $SHARDS; do spread "$n"; done
	((CHECK_SHARDS == 0)) || check
	echo "wall $(($(date +%s) - start))" >>"$OUT/env.txt"
}

summarise() {
	python3 - "$OUT" <<'EOF'
import glob, json, math, os, re, shlex, statistics, sys
from collections import Counter, defaultdict

out = sys.argv[1]
env = dict(l.rstrip("\n").split(" ", 1) for l in open(os.path.join(out, "env.txt")) if " " in l)
sett = dict(kv.split("=", 1) for kv in shlex.split(env.get("settings", "")))

print("# keyrelay scale-out on Redis (bench/scale.sh)\n")
print(f"- command: `{env.get('command')}`")
print(f"- date: {env.get('date')}; commit {env.get('commit')}")
print(f"- machine: {env.get('cpus')} cores ({env.get('cpu_model')}), Redis {env.get('redis')}, {env.get('go')}; "
      f"load average at the start {env.get('loadavg')}")
print(f"- settings: {env.get('settings')}")
if "wall" in env:
    print(f"- wall time: {env['wall']} s")
print(f"- raw data: {out}")

def load(name):
    try:
        return json.load(open(os.path.join(out, f"{name}.json")))
    except (OSError, ValueError):
        return {}

def med(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")

def f(x, d=0):
    return "n/a" if x is None or math.isnan(x) else f"{x:,.{d}f}"

cpu = {}
for l in open(os.path.join(out, "cpu.tsv")):
    name, relay, redis = l.split()
    cpu[name] = (float(relay), float(redis))

# Part 1.
rounds = int(sett.get("ROUNDS", 0))
chat_pairs = int(sett.get("CHAT_PAIRS", 0))
per_round = []
fig = defaultdict(lambda: defaultdict(list))
for r in range(1, rounds + 1):
    for m in ("a", "b"):
        h, c = load(f"r{r}-{m}-handshake"), load(f"r{r}-{m}-chat")
        hc = cpu.get(f"r{r}-{m}-handshake", (math.nan, math.nan))
        cc = cpu.get(f"r{r}-{m}-chat", (math.nan, math.nan))
        hs_ok = h.get("pairs_completed", 0)
        msgs = c.get("delivery", {}).get("delivered", c.get("messages", 0))
        chat_ok = c.get("pairs_completed", 0)
        d = fig[m]
        d["hs_rate"].append(h.get("pairs_per_second", math.nan))
        d["msg_rate"].append(c.get("messages_per_second", math.nan))
        relay_h = hc[0] * 1e6 / hs_ok if hs_ok else math.nan
        redis_h = hc[1] * 1e6 / hs_ok if hs_ok else math.nan
        d["relay_hs"].append(relay_h)
        d["redis_hs"].append(redis_h)
        d["relay_msg"].append((cc[0] * 1e6 - chat_ok * relay_h) / msgs if msgs else math.nan)
        d["redis_msg"].append((cc[1] * 1e6 - chat_ok * redis_h) / msgs if msgs else math.nan)
        per_round.append((r, m, h, c, hs_ok, msgs))

label = {"a": "(a) 1 relay, memory", "b": "(b) 2 relays, 1 Redis"}
print(f"\n## 1. Two instances on one Redis against one in memory\n")
print(f"Medians of {rounds} round(s), a and b alternating, fresh processes each time. Handshake: "
      f"{sett.get('HS_PAIRS')} pairs, {sett.get('HS_CONCURRENCY')} in flight; chat: {chat_pairs} pairs at once, "
      f"{sett.get('CHAT_MESSAGES')} round trips of {sett.get('SIZE')} bytes each (messages counted both ways); "
      f"client crypto {sett.get('CLIENT_CRYPTO')}. In (b) the two peers of every pair are on different relays. "
      "CPU per operation: the relays' (summed) and redis-server's, over the load's operations; per message after "
      "taking out the chat pairs' handshakes at the round's cost per handshake. The relays' background work during the load is included.\n")
print("| figure | " + " | ".join(label[m] for m in "ab") + " | b/a |")
print("| --- | ---: | ---: | ---: |")
rows = [("handshakes/s", "hs_rate", 0, True), ("messages/s", "msg_rate", 0, True),
        ("relay CPU per handshake (µs)", "relay_hs", 0, True), ("Redis CPU per handshake (µs)", "redis_hs", 0, False),
        ("relay CPU per message (µs)", "relay_msg", 1, True), ("Redis CPU per message (µs)", "redis_msg", 1, False)]
for title, k, dec, ratio in rows:
    a, b = med(fig["a"][k]), med(fig["b"][k])
    rr = f"{b / a * 100:.0f}%" if ratio and a and not math.isnan(a) and not math.isnan(b) else "–"
    print(f"| {title} | {f(a, dec) if not math.isnan(a) else '–'} | {f(b, dec)} | {rr} |")

print("\nEach run:\n")
print("| round | set-up | handshakes/s | handshake pairs ok / failed | relay CPU s (handshakes) | Redis CPU s (handshakes) "
      "| messages/s | messages delivered | chat pairs ok / failed | relay CPU s (chat) | Redis CPU s (chat) |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
errors = []
for r, m, h, c, hs_ok, msgs in per_round:
    hc = cpu.get(f"r{r}-{m}-handshake", (math.nan, math.nan))
    cc = cpu.get(f"r{r}-{m}-chat", (math.nan, math.nan))
    print(f"| {r} | {m} | {f(h.get('pairs_per_second', math.nan))} | {hs_ok} / {h.get('pairs_failed', 'n/a')} | "
          f"{f(hc[0], 2)} | {'–' if math.isnan(hc[1]) else f(hc[1], 2)} | {f(c.get('messages_per_second', math.nan))} | {msgs} | "
          f"{c.get('pairs_completed', 0)} / {c.get('pairs_failed', 'n/a')} | {f(cc[0], 2)} | {'–' if math.isnan(cc[1]) else f(cc[1], 2)} |")
    for name, j in (("handshake", h), ("chat", c)):
        if j.get("errors"):
            errors.append(f"round {r} {m} {name}: {j['errors']}")
        lost = j.get("delivery", {})
        if lost.get("lost") or lost.get("duplicated"):
            errors.append(f"round {r} {m} {name}: {lost.get('lost')} lost, {lost.get('duplicated')} duplicated")
if errors:
    print("\nFailures (a figure from a run with failures is suspect):\n")
    for e in errors:
        print(f"- {e}")

# Part 2.
def cmdstats(path):
    s = {}
    try:
        for l in open(path):
            m = re.match(r"cmdstat_([\w|-]+):calls=(\d+),usec=(\d+)", l.strip())
            if m:
                s[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return s

shards = [int(x) for x in sett.get("SHARDS", "").split()]
if shards:
    print(f"\n## 2. Spread over shards\n")
    print(f"A Redis Cluster of N masters (no replicas, even slot ranges), one relay, {sett.get('ROOMS')} handshake pairs "
          f"({sett.get('HS_CONCURRENCY')} in flight); each leaves its room in Redis for its members' resume grace. "
          "Right after the run, per master: the room hashes it holds (`SCAN` for `keyrelay:{TAG}:room:ID`), the partitions "
          "whose room index it holds (of 256), and its commands since `CONFIG RESETSTAT` before the run (INFO commandstats; "
          "\"all\" counts the scripts' own commands too). Deviation: (rooms − rooms/N) / (rooms/N). The EVALSHA counts include the "
          "relay's background scripts: every second, the census on every partition (rooms.lua, which also lists the ledgers due), and the lease.\n")
    print("| masters | master (port) | slots | rooms | share | deviation from even | partitions with rooms | EVALSHA | EVALSHA share | all commands | Redis CPU s |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    maxdev = {}
    notes = []
    for n in shards:
        name = f"shards{n}"
        j = load(f"{name}-handshake")
        try:
            rows = [l.split() for l in open(os.path.join(out, f"{name}.tsv"))]
        except OSError:
            print(f"| {n} | no result | | | | | | | | | |")
            continue
        slots = dict(l.split(" ", 1) for l in open(os.path.join(out, f"{name}-slots.txt")) if " " in l)
        stats = [cmdstats(os.path.join(out, f"{name}-node{i + 1}-commandstats.txt")) for i in range(len(rows))]
        total = sum(int(r[1]) for r in rows)
        ev_total = sum(s.get("evalsha", 0) for s in stats)
        devs = []
        for i, (p, rooms, parts, c) in enumerate(rows):
            rooms = int(rooms)
            even = total / n if n else math.nan
            dev = (rooms - even) / even * 100 if even else math.nan
            devs.append(dev)
            ev = stats[i].get("evalsha", 0)
            print(f"| {n} | {i + 1} ({p}) | {slots.get(p, '?').strip()} | {rooms} | {rooms / total * 100 if total else math.nan:.1f}% | "
                  f"{dev:+.1f}% | {parts} | {ev} | {ev / ev_total * 100 if ev_total else math.nan:.1f}% | {sum(stats[i].values())} | {float(c):.2f} |")
        maxdev[n] = max((abs(d) for d in devs), default=math.nan)
        ok, failed = j.get("pairs_completed", 0), j.get("pairs_failed", "n/a")
        notes.append(f"{n} master(s): {total} room hashes found for {ok} completed pairs ({failed} failed"
                     f"{', errors ' + str(j['errors']) if j.get('errors') else ''}); handshakes/s {f(j.get('pairs_per_second', math.nan))}; "
                     f"largest deviation from the even share {maxdev[n]:.1f}%.")
    print()
    for note in notes:
        print(f"- {note}")
    print("- The handshakes/s of this part are not a scaling figure: the relay, the load and every master share the machine's cores.")

# Part 3.
win = {}
try:
    for l in open(os.path.join(out, "check-windows.txt")):
        k, v = l.split()
        win[k] = float(v)
except OSError:
    pass
if win:
    ports = [l.split()[0] for l in open(os.path.join(out, "check-slots.txt")) if l.strip()]
    n = len(ports)
    print(f"\n## 3. One operation on a cluster of {n} masters\n")
    print("After `CONFIG RESETSTAT` on every master and with `MONITOR` on each, three windows: the relay idle, a handshake "
          "of 1 pair, a chat of 1 pair. MONITOR shows each script's keys, which sorts the scripts (EVALSHA or EVAL, not the "
          "commands run inside them): **room** (the test's rooms, key `keyrelay:{TAG}:room:ID`), **source** (the per-source "
          "byte counter `keyrelay:src:{SOURCE}`), **limits** (admission limits, `keyrelay:limits:…`) and the relay's "
          "**background**, every second: the census of rooms and bytes (rooms.lua, on every partition, which also lists the ledgers due; "
          "relays before it ran a separate ledger sweep, due.lua), the instance lease (lease.lua, `keyrelay:instances`) and any other script. "
          "`INFO commandstats` EVALSHA counts all of them. The window, for both, is from `CONFIG RESETSTAT` (an `ECHO` in the same "
          "MULTI/EXEC marks it in MONITOR) to the `INFO commandstats` that read them; \"all commands\" includes that transaction (RESETSTAT, ECHO, EXEC) and the scripts' "
          "own commands. Before the windows, a warm-up of chat pairs has loaded the scripts on every master, so that a script is one EVALSHA, "
          "not a refused EVALSHA and an EVAL. A background tick (every second) may or may not fall in a short window; "
          "\"seconds\" runs from the first master's RESETSTAT to the last one's INFO.\n")
    print("| window | seconds | master (port) | EVALSHA / EVAL (commandstats) | all commands (commandstats) | room | source | limits "
          "| background: census / ledger sweep / lease / other | other commands (MONITOR, top level) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    qs = re.compile(r'"((?:[^"\\]|\\.)*)"')
    room_key = re.compile(r"^keyrelay:\{([^}]+)\}:room:([^:]+)$")
    verdicts, with_evalsha = [], {}
    for w in ("idle", "handshake", "chat"):
        with_evalsha[w] = sum(1 for i in range(n) if cmdstats(os.path.join(out, f"check-{w}-node{i + 1}-commandstats.txt")).get("evalsha"))
        room_masters = defaultdict(set)
        src_masters = defaultdict(Counter)
        script_masters = set()
        for i, p in enumerate(ports):
            st = cmdstats(os.path.join(out, f"check-{w}-node{i + 1}-commandstats.txt"))
            cls, other = Counter(), Counter()
            try:
                lines = open(os.path.join(out, f"check-{w}-node{i + 1}-monitor.txt"), errors="replace").read().splitlines()
            except OSError:
                lines = []
            inside = marker_exec = False
            for l in lines:
                m = re.match(r"^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$", l)
                if not m or m.group(1) == "lua":
                    continue  # a script's own command, or not a command
                args = qs.findall(m.group(2))
                if not args:
                    continue
                cmd = args[0].lower()
                # The window: from the ECHO after RESETSTAT to the INFO
                # that read the commandstats.
                if cmd == "echo" and args[1:] == ["keyrelay-scale-start"]:
                    inside, marker_exec = True, True
                    continue
                if cmd == "exec" and inside and marker_exec:
                    marker_exec = False  # the marker's transaction
                    continue
                if cmd == "info" and args[1:] == ["commandstats"] and inside:
                    break
                if not inside:
                    continue
                if cmd in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"):
                    try:
                        keys = args[3:3 + int(args[2])]
                    except (IndexError, ValueError):
                        keys = []
                    if any(k.startswith("keyrelay:limits:") for k in keys):
                        cls["limits"] += 1
                    elif any(k.startswith("keyrelay:src:") for k in keys):
                        cls["source"] += 1
                        for k in keys:
                            if k.startswith("keyrelay:src:"):
                                src_masters[k][i + 1] += 1
                    elif any(room_key.match(k) for k in keys):
                        cls["room"] += 1
                        for k in keys:
                            rm = room_key.match(k)
                            if rm:
                                room_masters[rm.group(2)].add(i + 1)
                    elif any(k.endswith(":budget:total") for k in keys):
                        cls["census"] += 1  # rooms.lua: a partition's rooms and bytes
                    elif any(k.endswith(":budget:ledgers") for k in keys):
                        cls["ledgers"] += 1  # due.lua: a partition's ledgers due
                    elif "keyrelay:instances" in keys:
                        cls["lease"] += 1  # lease.lua
                    else:
                        cls["other"] += 1
                else:
                    other[cmd] += 1
            if cls["room"] or cls["source"] or cls["limits"]:
                script_masters.add(i + 1)
            oth = ", ".join(f"{k} {v}" for k, v in other.most_common()) or "–"
            print(f"| {w} | {win.get(w, math.nan):.1f} | {i + 1} ({p}) | {st.get('evalsha', 0)} / {st.get('eval', 0)} | {sum(st.values())} | "
                  f"{cls['room']} | {cls['source']} | {cls['limits']} | {cls['census']} / {cls['ledgers']} / {cls['lease']} / {cls['other']} | {oth} |")
        if w != "idle":
            j = load(f"check-{w}")
            rooms = "; ".join(f"room {r}: master(s) {', '.join(map(str, sorted(ms)))}" for r, ms in room_masters.items()) or "no room script seen"
            one = all(len(ms) == 1 for ms in room_masters.values()) and room_masters
            msgs = j.get("delivery", {}).get("delivered", 0)
            srcs = "; ".join(f"`{k}` on master(s) {', '.join(f'{m} ({c} scripts)' for m, c in sorted(ms.items()))}"
                             for k, ms in src_masters.items())
            if srcs:
                rooms += f"; per-source counter: {srcs}, for {msgs} messages"
            verdicts.append(f"{w} ({j.get('pairs_completed', 0)} pair completed, {j.get('pairs_failed', 'n/a')} failed): {rooms}. "
                            f"Every script on a room ran on {'one master' if one else 'MORE THAN ONE master, or none'}; masters that ran any "
                            f"of the operation's scripts (room, source, limits): {len(script_masters)} of {n}.")
    print()
    for v in verdicts:
        print(f"- {v}")
    print(f"- Masters with EVALSHA calls in INFO commandstats alone: idle {with_evalsha['idle']}, handshake {with_evalsha['handshake']}, "
          f"chat {with_evalsha['chat']} (of {n}). That count is noise for one operation: the relay's census and ledger sweep run on "
          "every partition every second, so it depends on whether a tick fell in the window; the MONITOR classes above are the figures to read.")

# The relays' logs (at warn: any line is worth a look).
logs = sorted(glob.glob(os.path.join(out, "*relay*.log")))
bad = [(os.path.basename(p), open(p, errors="replace").read().splitlines()) for p in logs]
bad = [(p, ls) for p, ls in bad if ls]
print("\n## Relay logs\n")
print(f"{len(logs)} relay logs (at warn); their lines, the time taken out, by how often:\n")
if not bad:
    print("- none")
seen, where = Counter(), defaultdict(set)
for p, ls in bad:
    for l in ls:
        k = re.sub(r"^time=\S+ ", "", l)[:300]
        seen[k] += 1
        where[k].add(p)
for k, v in seen.most_common():
    print(f"- {v} × in {len(where[k])} of {len(logs)} logs: `{k}`")
EOF
}

[ -n "${SUMMARY_ONLY:-}" ] || run_all
summarise | tee "$OUT/report.md"
