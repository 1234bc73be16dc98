# shellcheck shell=bash disable=SC2034  # it sets variables for the scripts that source it
# bench/lib.sh: the shell the abuse benchmarks share (abuse.sh,
# abuse_keyapi.sh, abuse_accept.sh). Source it; it defines functions and
# runs nothing:
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init abuse-foo      # cd to the repository, OUT, TMP, GO; on exit
#                             # every process started here is killed
#   bench_build               # $TMP/keyrelay and $TMP/keyrelay-load
#   relay_start [FLAG...]     # a relay on a free 127.0.0.1 port: RELAY, PORT
#   sample_start PHASE        # RSS and CPU of the relay once a second
#   honest PHASE DURATION     # the honest open loop; $OUT/honest-PHASE.json
#   sample_stop PHASE
#   relay_stop
#   python3 - "$OUT" <<EOF    # import benchlib: phase(), honest(), row()
#
# Settings it reads (the caller may set defaults first):
#   OUT             output directory (default $TMPDIR/keyrelay-NAME-DATE)
#   RELAY_FLAGS     extra keyrelay flags for every relay (default none)
#   RELAY_NOFILE    if set, the relay runs under `ulimit -n` of it (soft and hard)
#   HONEST_ADDRS    honest source addresses (default 127.0.0.2-127.0.0.11)
#   HONEST_RATE     honest pair arrivals a second (default 4)
#   HONEST_CONCURRENCY  honest pairs in flight at most (default 16)
#   SUMMARY_ONLY    if set, OUT's samples.txt is kept (for a summary of an earlier run)
# Loopback only.

# bench_init NAME: the common prologue.
bench_init() {
	set -euo pipefail
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	cd "$ROOT"
	OUT=${OUT:-${TMPDIR:-/tmp}/keyrelay-$1-$(date -u +%F)}
	mkdir -p "$OUT"
	OUT=$(cd "$OUT" && pwd)
	RELAY_FLAGS=${RELAY_FLAGS:-}
	HONEST_ADDRS=${HONEST_ADDRS:-127.0.0.2-127.0.0.11}
	HONEST_RATE=${HONEST_RATE:-4}
	HONEST_CONCURRENCY=${HONEST_CONCURRENCY:-16}
	TMP=$(mktemp -d)
	PIDS=()
	# On INT or TERM, exit (the EXIT trap cleans up): a trap that only
	# cleaned up would let the script carry on without its processes.
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	GO=${GO:-go}
	command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
	TCK=$(getconf CLK_TCK)
	[ -n "${SUMMARY_ONLY:-}" ] || : >"$OUT/samples.txt"
	benchlib_py >"$TMP/benchlib.py"
	export PYTHONPATH="$TMP${PYTHONPATH:+:$PYTHONPATH}"
}

bench_cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}

# bench_build: keyrelay (the binary `go run ./cmd/keyrelay` runs) and
# keyrelay-load, into $TMP.
bench_build() {
	"$GO" build -o "$TMP/keyrelay" ./cmd/keyrelay
	"$GO" build -o "$TMP/keyrelay-load" ./cmd/keyrelay-load
}

# build_standalone DIR BIN: builds the standard-library-only main package
# in DIR, outside the module, to BIN.
build_standalone() {
	(cd "$1" && "$GO" mod init attack >/dev/null 2>&1 && "$GO" build -o "$2" .)
}

# free_port: a free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# relay_start [FLAG...]: starts $TMP/keyrelay on a free 127.0.0.1 port with
# FLAGs and then $RELAY_FLAGS, logging to $OUT/${RELAY_LOG:-relay.log}
# (appended), and waits for /healthz (10 s at most). Sets RELAY (its pid),
# PORT, URL (the WebSocket URL) and RSS_IDLE (KiB, right after the start).
relay_start() {
	PORT=$(free_port)
	local log="$OUT/${RELAY_LOG:-relay.log}"
	# shellcheck disable=SC2086
	if [ -n "${RELAY_NOFILE:-}" ]; then
		(ulimit -n "$RELAY_NOFILE" && exec "$TMP/keyrelay" --addr "127.0.0.1:$PORT" "$@" $RELAY_FLAGS 2>>"$log") &
	else
		"$TMP/keyrelay" --addr "127.0.0.1:$PORT" "$@" $RELAY_FLAGS 2>>"$log" &
	fi
	RELAY=$!
	PIDS+=("$RELAY")
	URL="ws://127.0.0.1:$PORT/v1/ws"
	for _ in $(seq 100); do
		curl -fsS --interface 127.0.0.2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
		kill -0 "$RELAY" 2>/dev/null || { echo "relay exited at start; see $log" >&2; return 1; }
		sleep 0.1
	done
	RSS_IDLE=$(rss_kib)
}

# relay_alive: whether the relay still runs.
relay_alive() { kill -0 "$RELAY" 2>/dev/null; }

# relay_stop: stops the relay (SIGTERM, then SIGKILL after 10 s).
relay_stop() {
	kill "$RELAY" 2>/dev/null || true
	for _ in $(seq 100); do
		relay_alive || break
		sleep 0.1
	done
	kill -9 "$RELAY" 2>/dev/null || true
	wait "$RELAY" 2>/dev/null || true
}

# rss_kib, hwm_kib: the relay's resident set now and at its peak (VmHWM).
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$RELAY/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$RELAY/status"; }

# sample PID PHASE: one line a second in $OUT/samples.txt, "PHASE t
# rss_kib cpu_percent machine_percent": the CPU of PID and of the whole
# machine (busy: all but idle and iowait) over the last second, in % of one
# core, until the file $TMP/stop-PHASE exists or PID ends.
sample() {
	local pid=$1 phase=$2 last_t last_ticks last_cpu t ticks cpu rss
	last_t=$(date +%s.%N)
	last_ticks=$(awk '{print $14+$15}' "/proc/$pid/stat")
	last_cpu=$(machine_ticks)
	while [ ! -e "$TMP/stop-$phase" ]; do
		sleep 1
		t=$(date +%s.%N)
		ticks=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null) || break
		rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
		cpu=$(machine_ticks)
		echo "$phase $t $rss $(awk -v a="$last_ticks" -v b="$ticks" -v m="$last_cpu" -v n="$cpu" -v s="$last_t" -v e="$t" -v k="$TCK" \
			'BEGIN {printf "%.1f %.1f", (b-a)/k/(e-s)*100, (n-m)/k/(e-s)*100}')"
		last_t=$t
		last_ticks=$ticks
		last_cpu=$cpu
	done >>"$OUT/samples.txt"
}

# machine_ticks: the clock ticks all CPUs spent busy since boot.
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }

# sample_start PHASE, sample_stop PHASE: sample the relay during PHASE.
# sample_stop waits for the last sample.
declare -A SAMPLERS
sample_start() {
	sample "$RELAY" "$1" &
	SAMPLERS[$1]=$!
	PIDS+=("$!")
}
sample_stop() {
	touch "$TMP/stop-$1"
	wait "${SAMPLERS[$1]}" 2>/dev/null || true
}

# honest PHASE DURATION: keyrelay-load's handshake scenario, an open loop
# of $HONEST_RATE pairs a second from $HONEST_ADDRS for DURATION; its
# summary in $OUT/honest-PHASE.json, its log in $OUT/honest-PHASE.log.
honest() {
	"$TMP/keyrelay-load" --url "$URL" --source-addrs "$HONEST_ADDRS" \
		--scenario handshake --pairs 0 --duration "$2" --rate "$HONEST_RATE" --concurrency "$HONEST_CONCURRENCY" \
		--metrics-url none --max-error-rate 1 --json "$OUT/honest-$1.json" >/dev/null 2>"$OUT/honest-$1.log" || true
}

# benchlib_py: the Python module benchlib, for the scripts' summaries.
benchlib_py() {
	cat <<'EOF'
"""benchlib: reads what bench/lib.sh wrote in OUT."""
import json, math, os

def phase(out, p):
    """The relay's samples of phase p: rss_peak (KiB), cpu_mean, cpu_peak
    (% of one core), machine_mean (the whole machine's busy CPU, % of one
    core), n; NaN and 0 without samples."""
    s = []
    with open(os.path.join(out, "samples.txt")) as f:
        for line in f:
            r = line.split()
            if len(r) == 5 and r[0] == p:
                s.append((int(r[2]), float(r[3]), float(r[4])))
    if not s:
        nan = float("nan")
        return {"rss_peak": nan, "cpu_mean": nan, "cpu_peak": nan, "machine_mean": nan, "n": 0}
    return {"rss_peak": max(x[0] for x in s), "cpu_mean": sum(x[1] for x in s) / len(s),
            "cpu_peak": max(x[1] for x in s), "machine_mean": sum(x[2] for x in s) / len(s), "n": len(s)}

def honest(out, p):
    """keyrelay-load's summary of phase p, or {} if there is none."""
    try:
        with open(os.path.join(out, f"honest-{p}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

def lat(j, metric, q):
    """Percentile q (p50, p99 …) of metric in ms, NaN if absent."""
    return j.get("latency_ms", {}).get(metric, {}).get(q, float("nan"))

def setup(j, q):
    """An estimate of one pair's whole setup at percentile q: two connects,
    the create, and the handshake (which includes the join), summed."""
    return 2 * lat(j, "connect", q) + lat(j, "join", q) + lat(j, "handshake", q)

def ms(x):
    return "n/a" if math.isnan(x) else f"{x:.1f}"

def mib(kib):
    return "n/a" if math.isnan(kib) else f"{kib/1024:.0f} MiB"

def row(out, p, name, extra=()):
    """The standard table row of phase p: RSS peak, CPU, extra cells,
    honest pairs, connect, join and handshake p50 / p99."""
    s, j = phase(out, p), honest(out, p)
    ok = f"{j.get('pairs_completed', 'n/a')} / {j.get('pairs_failed', 'n/a')}"
    cells = [name, mib(s["rss_peak"]), f"{s['cpu_mean']:.0f}% / {s['cpu_peak']:.0f}% of a core", *extra, ok]
    for m in ("connect", "join", "handshake"):
        cells.append(f"{ms(lat(j, m, 'p50'))} / {ms(lat(j, m, 'p99'))} ms")
    return "| " + " | ".join(cells) + " |"

def header(extra=()):
    cols = ["phase", "relay RSS peak", "relay CPU mean / peak", *extra, "honest pairs ok / failed",
            "connect p50 / p99", "join p50 / p99", "handshake p50 / p99"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)

def honest_errors(out, phases):
    """Lines naming the honest errors of each phase, if any."""
    lines = []
    for p in phases:
        e = honest(out, p).get("errors")
        if e:
            lines.append(f"Honest errors ({p}): {e}")
    return lines
EOF
}

# die MESSAGE: logs that the script failed (with the caller's log) and
# exits 1; the EXIT trap stops what the script started.
die() {
	log "FAILED: $*"
	exit 1
}

# forget PID: drops PID (ended) from what the cleanup kills, so that a
# reused PID is never signalled.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
