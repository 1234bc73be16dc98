#!/usr/bin/env bash
# bench/rolling.sh: a rolling restart under load (issue 14, last bullet),
# on loopback.
#
# It starts a real redis-server, three keyrelay relays (the built binary)
# sharing it, and Debian's nginx in front of them running the shipped
# deploy/nginx.conf. As deploy/nginx_test.go does, only the lines marked
# "# test:" change (the relays' and nginx's addresses; the third relay's
# server line goes right after the second's, as a third compose service
# would be added) and temporary-file paths are added; the rest of the file
# is run as written. Then two keyrelay-load processes go through nginx for
# the whole run, both with --resume (a peer whose connection drops resumes
# through nginx and carries on, see cmd/keyrelay-load):
#
#   chat   CHAT_PAIRS pairs in flight (closed loop), each CHAT_MESSAGES
#          round trips at CHAT_RATE a second (so a pair lasts about
#          CHAT_MESSAGES / CHAT_RATE seconds), 256-byte messages;
#   churn  CHURN_RATE pair arrivals a second (open loop): chat of 10 round
#          trips at 10 a second, then even pairs leave and odd pairs cut A's
#          connection and resume it.
#
# After WARMUP seconds it restarts each relay in turn with SIGTERM (the
# relay sends its clients close 1001; the script waits for it to exit,
# starts it again on the same port, waits for /readyz, then SETTLE
# seconds), then SIGKILLs relay KILL_RELAY, starts it again at once, waits
# for /readyz, then the lease, one second and SETTLE. The relays run with
# --instance-lease LEASE (3s, the minimum, by default: the killed relay's
# peers are marked dropped by the others within the lease plus a second).
# The loads stop starting pairs after LOAD_DURATION; the pairs in flight
# then finish.
#
# Every drop, resume, failed pair and delayed (delivered more than 1 s
# after its Send began), lost or duplicated message is in the loads' event
# logs with its time; the summary places each in the phase of the timeline
# (warm-up, each restart from its signal to the next, the rest of the
# run after the last restart's wait) in which it
# happened: a resume by its drop's time, a delayed or duplicated message
# by its Send's, a failed pair and the messages it lost by the time its
# trouble began (its first drop, redial or late message; else its end).
# "lost" counts confirmed messages only (a message the relay never
# confirmed and that never arrived may never have been stored). It prints a Markdown summary:
# per phase the drops, resumes and their times (from the client seeing its
# connection end to the relay's resume reply), failed pairs and delayed,
# lost and duplicated messages; per load the pairs and messages; and the
# issue's targets: for SIGTERM 0 failed pairs and 0 lost or duplicated
# messages; for SIGKILL 0 lost and every affected client resumed within
# the lease + 1 s + 5 s (the clients' longest backoff step).
#
# With the defaults it takes about 2 minutes. Environment (all optional):
#   CHAT_PAIRS      chat pairs in flight (default 50)
#   CHAT_RATE       round trips a second per chat pair (default 4)
#   CHAT_MESSAGES   round trips per chat pair (default 80)
#   CHURN_RATE      churn pair arrivals a second (default 4)
#   LOAD_DURATION   seconds the loads start pairs (default 75)
#   WARMUP          seconds of load before the first restart (default 10)
#   SETTLE          seconds after a restarted relay is ready (default 5)
#   KILL_RELAY      the relay killed with SIGKILL, 1 to 3 (default 2)
#   LEASE           the relays' --instance-lease (default 3s; whole seconds)
#   RELAY_FLAGS     extra keyrelay flags for every relay (default none)
#   NGINX_SERVER_PARAMS  parameters added to each upstream server line, such
#                   as "max_fails=0" (default none: the shipped file; a
#                   diagnostic only, and the summary says it was used)
#   OUT             output directory (default $TMPDIR/keyrelay-rolling-DATE)
#   SUMMARY_ONLY    if set, only summarise the run already in OUT
# OUT keeps timeline.txt, chat.json, churn.json, *-events.jsonl, the
# loads' outputs, relayN.log, nginx.log, nginx-access.log, redis.log,
# nginx.conf and summary.md. It exits non-zero if a process did not come
# up or the restarts outlasted the load, not for a missed target (the
# summary says so).
# shellcheck source=bench/lib.sh disable=SC1091 # followed with shellcheck -x
. "$(dirname "$0")/lib.sh"
bench_init rolling

CHAT_PAIRS=${CHAT_PAIRS:-50}
CHAT_RATE=${CHAT_RATE:-4}
CHAT_MESSAGES=${CHAT_MESSAGES:-80}
CHURN_RATE=${CHURN_RATE:-4}
LOAD_DURATION=${LOAD_DURATION:-75}
WARMUP=${WARMUP:-10}
SETTLE=${SETTLE:-5}
KILL_RELAY=${KILL_RELAY:-2}
LEASE=${LEASE:-3s}
NGINX_SERVER_PARAMS=${NGINX_SERVER_PARAMS:-}
LEASE_S=${LEASE%s}
[[ $LEASE_S =~ ^[0-9]+$ ]] || { echo "rolling.sh: LEASE must be whole seconds, such as 3s" >&2; exit 2; }
[[ $KILL_RELAY =~ ^[1-3]$ ]] || { echo "rolling.sh: KILL_RELAY must be 1, 2 or 3" >&2; exit 2; }

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
declare -a RPORT RPID

log() { printf '[%s] %s\n' "$(date -u +%T)" "$*" >&2; }
# stamp EVENT [RELAY]: a line of the timeline, "unix-time EVENT RELAY".
stamp() {
	echo "$(date +%s.%N) $*" >>"$OUT/timeline.txt"
	log "$*"
}

start_redis() {
	REDIS_PORT=$(free_port)
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$TMP" \
		--logfile "$OUT/redis.log" --daemonize no &
	PIDS+=("$!")
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return
		sleep 0.1
	done
	die "redis-server did not answer on port $REDIS_PORT; see $OUT/redis.log"
}

# relay_launch I: starts relay I on its port and waits for its /readyz.
relay_launch() {
	local i=$1
	# shellcheck disable=SC2086
	"$TMP/keyrelay" --addr "127.0.0.1:${RPORT[$i]}" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
		--instance-lease "$LEASE" --trusted-proxies 127.0.0.1 \
		--max-conns-per-ip -1 --joins-per-ip -1 --joins-per-room -1 --rooms-per-ip -1 \
		--log-format text --log-level info $RELAY_FLAGS >>"$OUT/relay$i.log" 2>&1 &
	RPID[i]=$!
	PIDS+=("${RPID[$i]}")
	for _ in $(seq 150); do
		curl -fsS -m 1 -o /dev/null "http://127.0.0.1:${RPORT[$i]}/readyz" 2>/dev/null && return
		kill -0 "${RPID[$i]}" 2>/dev/null || die "relay $i exited at start; see $OUT/relay$i.log"
		sleep 0.1
	done
	die "relay $i not ready within 15 s; see $OUT/relay$i.log"
}

# relay_stop I SIGNAL: signals relay I and waits for it to exit (SIGTERM:
# 20 s at most, then SIGKILL, noted in the timeline).
relay_stop() {
	local i=$1 sig=$2 pid=${RPID[$1]}
	kill "-$sig" "$pid"
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		stamp "stop-timeout relay$i"
		kill -KILL "$pid"
	fi
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}

# nginx_conf: the shipped deploy/nginx.conf adapted as deploy/nginx_test.go
# does (adaptConf): each line marked "# test: NAME" replaced, a marker
# missing, repeated or left without a replacement refused; temporary-file
# paths under $NGINX_DIR added at the top of the http block. The server
# lines get $NGINX_SERVER_PARAMS, if set (a diagnostic, not the shipped
# configuration).
nginx_conf() {
	python3 - deploy/nginx.conf "$NGINX_DIR" "127.0.0.1:$NGINX_PORT" \
		"127.0.0.1:${RPORT[1]}" "127.0.0.1:${RPORT[2]}" "127.0.0.1:${RPORT[3]}" "$NGINX_SERVER_PARAMS" <<'EOF'
import sys
path, tmp, listen, r1, r2, r3, params = sys.argv[1:]
p = f" {params}" if params else ""
repl = {"relay 1": r1, "relay 2": r2, "listen": f"        listen {listen};"}
out, used, http = [], set(), False
for line in open(path).read().split("\n"):
    if "# test: " in line:
        name = line.split("# test: ", 1)[1].strip()
        if name not in repl:
            sys.exit(f"{path}: no replacement for marker {name!r}")
        if name in used:
            sys.exit(f"{path}: marker {name!r} appears twice")
        used.add(name)
        fields = line.split()
        if len(fields) > 1 and fields[0] == "server":
            # Only the address: the server's parameters are the shipped
            # file's (plus $NGINX_SERVER_PARAMS).
            head = line.split("# test:", 1)[0].rstrip().rstrip(";")
            head = head.replace(fields[1].rstrip(";"), repl[name], 1) + p + ";"
            out.append(head)
            if name == "relay 2":  # the third relay, after the second
                out.append(head.replace(r2, r3, 1))
            continue
        out.append(repl[name])
        continue
    out.append(line)
    if line.strip() == "http {" and not http:
        http = True
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            out.append(f"    {d}_temp_path {tmp}/{d};")
missing = set(repl) - used
if missing:
    sys.exit(f"{path}: no line marked '# test: {sorted(missing)[0]}'")
if not http:
    sys.exit(f"{path}: no line 'http {{'")
print("\n".join(out))
EOF
}

start_nginx() {
	[ -x "$NGINX" ] || die "nginx is not installed (Debian: apt-get install nginx)"
	# nginx's workers run as nobody when it runs as root: they must reach
	# the temporary-file directories.
	chmod 755 "$TMP"
	NGINX_DIR=$TMP/nginx
	mkdir -p "$NGINX_DIR"
	NGINX_PORT=$(free_port)
	nginx_conf >"$OUT/nginx.conf" || die "deploy/nginx.conf could not be adapted"
	"$NGINX" -p "$NGINX_DIR/" -c "$OUT/nginx.conf" -e stderr \
		-g "daemon off; pid $NGINX_DIR/nginx.pid;" >"$OUT/nginx-access.log" 2>"$OUT/nginx.log" &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	for _ in $(seq 100); do
		curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$NGINX_PORT/readyz" 2>/dev/null && return
		kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited at start; see $OUT/nginx.log"
		sleep 0.1
	done
	die "nginx did not proxy /readyz within 10 s; see $OUT/nginx.log"
}

# load NAME ARGS...: keyrelay-load through nginx in the background, with
# --resume, its summary in $OUT/NAME.json and its events in
# $OUT/NAME-events.jsonl.
load() {
	local name=$1
	shift
	"$TMP/keyrelay-load" --url "ws://127.0.0.1:$NGINX_PORT/v1/ws" --resume "$@" \
		--duration "${LOAD_DURATION}s" --metrics-url none --max-error-rate 1 --progress \
		--json "$OUT/$name.json" --event-log "$OUT/$name-events.jsonl" >"$OUT/$name.txt" 2>"$OUT/$name.log" &
	LOADS+=("$!")
	PIDS+=("$!")
}

run_all() {
	rm -f "$OUT"/timeline.txt "$OUT"/relay?.log "$OUT"/*.json "$OUT"/*-events.jsonl
	log "building into $TMP; output in $OUT"
	bench_build
	{
		echo "date $(date -u '+%F %T UTC')"
		echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
		echo "cpus $(nproc)"
		echo "lease $LEASE"
		echo "chat $CHAT_PAIRS pairs in flight, $CHAT_MESSAGES round trips at $CHAT_RATE/s each"
		echo "churn $CHURN_RATE pairs/s"
		echo "load_duration $LOAD_DURATION"
		echo "kill_relay $KILL_RELAY"
		echo "nginx_server_params $NGINX_SERVER_PARAMS"
	} >"$OUT/env.txt"
	start_redis
	for i in 1 2 3; do
		RPORT[i]=$(free_port)
		relay_launch "$i"
	done
	start_nginx
	log "redis 127.0.0.1:$REDIS_PORT, relays ${RPORT[1]} ${RPORT[2]} ${RPORT[3]}, nginx 127.0.0.1:$NGINX_PORT"

	LOADS=()
	stamp start
	load chat --scenario chat --pairs 0 --concurrency "$CHAT_PAIRS" --messages "$CHAT_MESSAGES" \
		--message-rate "$CHAT_RATE" --size 256 --timeout 120s
	load churn --scenario churn --pairs 0 --rate "$CHURN_RATE" --concurrency 64 --messages 10 \
		--message-rate 10 --size 256 --timeout 60s
	sleep "$WARMUP"

	for i in 1 2 3; do
		stamp sigterm "relay$i"
		relay_stop "$i" TERM
		stamp exited "relay$i"
		relay_launch "$i"
		stamp ready "relay$i"
		sleep "$SETTLE"
	done
	stamp sigkill "relay$KILL_RELAY"
	relay_stop "$KILL_RELAY" KILL
	stamp exited "relay$KILL_RELAY"
	relay_launch "$KILL_RELAY"
	stamp ready "relay$KILL_RELAY"
	sleep $((LEASE_S + 1 + SETTLE))
	stamp restarts-done

	local pid late=0
	for pid in "${LOADS[@]}"; do kill -0 "$pid" 2>/dev/null || late=1; done
	kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited; see $OUT/nginx.log"
	for pid in "${LOADS[@]}"; do
		wait "$pid" || log "a load exited non-zero (its output: $OUT/*.txt, *.log)"
		forget "$pid"
	done
	stamp end
	[ "$late" = 0 ] || die "a load ended before the restarts did: raise LOAD_DURATION"
}

summarise() {
	python3 - "$OUT" "$LEASE_S" <<'EOF'
import json, math, os, re, sys
from collections import Counter

out, lease = sys.argv[1], float(sys.argv[2])
bound = lease + 1 + 5  # lease, the sweep's second, the clients' longest backoff step

env = dict(l.rstrip("\n").split(" ", 1) for l in open(os.path.join(out, "env.txt")))
timeline = []
for line in open(os.path.join(out, "timeline.txt")):
    t, ev, *rest = line.split()
    timeline.append((float(t), ev, rest[0] if rest else ""))
# Phases: warm-up from the start, each restart from its signal, and the
# rest of the run from the end of the last restart's wait.
names = {"start": "warm-up", "restarts-done": "after the restarts"}
phases = [(t, names.get(ev) or f"{ev.upper()} {who}", ev)
          for t, ev, who in timeline if ev in ("start", "sigterm", "sigkill", "restarts-done")]
ready = {}  # phase index → seconds from the signal to /readyz again
for k, (t0, _, kind) in enumerate(phases):
    for t, ev, who in timeline:
        if kind in ("sigterm", "sigkill") and ev == "ready" and t > t0 and k not in ready:
            ready[k] = t - t0

def phase_of(t):
    k = 0
    for j, (t0, _, _) in enumerate(phases):
        if t >= t0:
            k = j
    return k

def load(name):
    try:
        return json.load(open(os.path.join(out, f"{name}.json")))
    except (OSError, ValueError):
        return {}

def events(name):
    try:
        return [dict(json.loads(l), load=name) for l in open(os.path.join(out, f"{name}-events.jsonl"))]
    except OSError:
        return []

def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[max(0, math.ceil(q / 100 * len(xs)) - 1)]

def fms(x):
    return "–" if math.isnan(x) else (f"{x/1000:.2f} s" if x >= 1000 else f"{x:.0f} ms")

evs = events("chat") + events("churn")
rows = []
per = {k: Counter() for k in range(len(phases))}
resume_ms = {k: [] for k in range(len(phases))}
closes = {k: Counter() for k in range(len(phases))}
affected = {k: set() for k in range(len(phases))}
codes = {k: Counter() for k in range(len(phases))}
def when(e):
    """When the event's cause happened: a resume's drop, a delayed or
    duplicated message's send, else when it was logged."""
    if e["event"] in ("resume", "resume_failed"):
        return e["drop_t"]
    if e["event"] in ("delayed", "duplicate"):
        return e["t"] - e.get("ms", 0) / 1000
    return e["t"]

# A failed pair, and a message it lost, count where the pair's trouble
# began: its first drop, redial or late message, if any.
first = {}
for e in evs:
    key = (e["load"], e["pair"])
    first[key] = min(first.get(key, math.inf), when(e))
for e in evs:
    kind = e["event"]
    if kind == "lost" and e.get("unconfirmed"):
        kind = "unconfirmed_lost"  # never confirmed: not a breach by itself
    t = when(e)
    if kind in ("pair_failed", "lost", "unconfirmed_lost"):
        t = first[(e["load"], e["pair"])]
    k = phase_of(t)
    per[k][kind] += 1
    if kind in ("resume", "resume_failed"):
        closes[k][e.get("close", "?")] += 1
        affected[k].add((e["load"], e["pair"]))
    if kind == "resume":
        resume_ms[k].append(e["ms"])
    if kind == "pair_failed":
        codes[k][f'{e["load"]} {e.get("code")}'] += 1

print(f"Run: {env.get('date')}, commit {env.get('commit')}, {env.get('cpus')} cores; relays with --instance-lease {env.get('lease')};")
print(f"chat: {env.get('chat')}; churn: {env.get('churn')}; loads start pairs for {env.get('load_duration')} s.")
if env.get("nginx_server_params", "").strip():
    print(f"DIAGNOSTIC: nginx's upstream server lines had {env['nginx_server_params'].strip()!r} added: not the shipped deploy/nginx.conf.")
else:
    print("nginx: the shipped deploy/nginx.conf (addresses replaced, a third server line added).")
print()
print("| phase | relay ready again after | drops (close code) | pairs affected | resumed / failed | resume p50 / p99 / max | setups started over | pairs failed | delayed > 1 s | lost | duplicated |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for k, (t0, name, kind) in enumerate(phases):
    c = per[k]
    drops = c["resume"] + c["resume_failed"]
    cl = ", ".join(f"{n} × {'none' if code == 'none' else code}" for code, n in sorted(closes[k].items()))
    r = resume_ms[k]
    failed = c["pair_failed"]
    fc = f" ({', '.join(f'{n} {code}' for code, n in sorted(codes[k].items()))})" if failed else ""
    rd = f"{ready[k]:.1f} s" if k in ready else "–"
    print(f"| {name} | {rd} | {drops}{f' ({cl})' if cl else ''} | {len(affected[k])} | {c['resume']} / {c['resume_failed']} | "
          f"{fms(pct(r, 50))} / {fms(pct(r, 99))} / {fms(max(r) if r else float('nan'))} | {c['redial']} | {failed}{fc} | "
          f"{c['delayed']} | {c['lost']} | {c['duplicate']} |")

print()
print("| load | pairs started | completed / failed | messages sent (confirmed + unconfirmed) | delivered | lost | duplicated | delayed > 1 s (max delay) | drops / resumed / failed (attempts) | resume p50 / p99 / max |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in ("chat", "churn"):
    j = load(name)
    if not j:
        print(f"| {name} | no summary: see {name}.log | | | | | | | | |")
        continue
    d, dr = j.get("delivery", {}), j.get("drops", {})
    started = j.get("open_loop", {}).get("started", j["pairs_attempted"] + j.get("pairs_abandoned", 0))
    if j.get("open_loop", {}).get("missed_arrivals"):
        started = f"{started} ({j['open_loop']['missed_arrivals']} arrivals missed: {j['concurrency']} in flight)"
    lat = j.get("latency_ms", {}).get("resume", {})
    res = " / ".join(fms(lat.get(q, float("nan"))) for q in ("p50", "p99", "max"))
    print(f"| {name} | {started} | {j['pairs_completed']} / {j['pairs_failed']} | {d.get('sent')} ({d.get('confirmed')} + {d.get('unconfirmed')}) | "
          f"{d.get('delivered')} | {d.get('lost')} | {d.get('duplicated')} | {d.get('delayed')} ({fms(d.get('max_delay_ms', float('nan')))}) | "
          f"{dr.get('drops')} / {dr.get('resumed')} / {dr.get('resume_failed')} ({dr.get('resume_attempts')}) | {res} |")
    if j.get("errors"):
        print(f"|  | errors: {', '.join(f'{k} {v}' for k, v in sorted(j['errors'].items()))} | | | | | | | | |")

statuses = Counter()
try:
    for line in open(os.path.join(out, "nginx-access.log")):
        m = re.search(r'" (\d{3}) ', line)
        if m:
            statuses[m.group(1)] += 1
except OSError:
    pass
print()
print(f"nginx responses by status: {', '.join(f'{s} × {n}' for s, n in sorted(statuses.items())) or 'none logged'}.")

term = [k for k, (_, _, kind) in enumerate(phases) if kind == "sigterm"]
kill = [k for k, (_, _, kind) in enumerate(phases) if kind == "sigkill"]
s = lambda ks, ev: sum(per[k][ev] for k in ks)
print()
print("Targets (issue 14):")
tf, tl, td = s(term, "pair_failed"), s(term, "lost"), s(term, "duplicate")
met = tf == 0 and tl == 0 and td == 0
print(f"- SIGTERM: 0 failed pairs, 0 lost or duplicated messages: {'met' if met else 'MISSED'} "
      f"({tf} failed pairs, {tl} lost, {td} duplicated over {len(term)} restarts).")
kl, kd, kf = s(kill, "lost"), s(kill, "duplicate"), s(kill, "resume_failed")
kr = [x for k in kill for x in resume_ms[k]]
kmax = max(kr) if kr else 0
naff = sum(len(affected[k]) for k in kill)
met = kl == 0 and kd == 0 and kf == 0 and kmax <= bound * 1000
verdict = "NOT MEASURED (no client was connected to the killed relay)" if naff == 0 else ("met" if met else "MISSED")
print(f"- SIGKILL: 0 lost and every affected client resumed within {bound:.0f} s (lease {lease:.0f} s + 1 s sweep + 5 s backoff): "
      f"{verdict} ({kl} lost, {kd} duplicated, {kf} failed resumes, {naff} pairs affected, "
      f"slowest resume {fms(kmax)}; {s(kill, 'pair_failed')} failed pairs).")
for kind, what in (("start", "the warm-up, before any restart,"), ("restarts-done", "the rest of the run, after the restarts,")):
    ks = [k for k, (_, _, x) in enumerate(phases) if x == kind]
    if any(s(ks, ev) for ev in ("resume", "resume_failed", "pair_failed", "lost", "duplicate", "delayed")):
        print(f"- Note: {what} had {s(ks, 'resume') + s(ks, 'resume_failed')} drops, {s(ks, 'pair_failed')} failed pairs, "
              f"{s(ks, 'delayed')} delayed, {s(ks, 'lost')} lost and {s(ks, 'duplicate')} duplicated messages.")
EOF
}

[ -n "${SUMMARY_ONLY:-}" ] || run_all
summarise | tee "$OUT/summary.md"
