#!/usr/bin/env bash
# bench/abuse.sh: issue 13's findings 1, 2, 3 and 6 at full scale, against
# relays with default limits, on loopback. The attacks are bench/abuse's
# subcommands (`go run ./bench/abuse` prints them):
#
#   mailbox  finding 1, memory through unacknowledged messages, twice:
#            mailbox-one from one source (127.0.0.1), mailbox-many from
#            MAILBOX_SOURCES at once. Per source, MAILBOX_WORKERS rooms at a
#            time: create, join both seats, fresh x25519 keys, then both
#            peers send the largest msg frames that fit 64 KiB (49 134-byte
#            bodies) at the byte budget (256 KiB/s a connection), never ack,
#            drop both connections, next room.
#   rooms    finding 2: ROOMS_SOURCES (180 addresses) each create a room and
#            leave it, ROOMS_RATE times a second; then an honest create
#            from 127.0.3.1, and the relay's keyrelay_rooms.
#   lockout  finding 3: an honest pair (127.0.0.2 creates, 127.0.0.3 joins),
#            a stranger on 127.0.0.1 sending join frames for the room at
#            LOCKOUT_JOIN_RATE a second; 127.0.0.3 drops its connection every
#            LOCKOUT_RESUME_EVERY and resumes with its token, then sends one
#            message, which 127.0.0.2 acks.
#   floods   finding 6, three phases: FLOOD_CONNS hand-written WebSocket
#            connections from 127.0.0.1 write (ping) empty pings, (big)
#            65 536-byte frames, (nested) frames nesting arrays 32 757 deep,
#            as fast as TCP takes them.
#
# Every phase gets a fresh relay (`go run ./cmd/keyrelay`'s binary, default
# limits and $RELAY_FLAGS, --log-level warn) on a free 127.0.0.1 port:
# BASE_DURATION of honest load alone, then the attack with the honest load
# beside it (keyrelay-load's handshake scenario, an open loop of
# HONEST_RATE pairs a second from HONEST_ADDRS), the relay's RSS and CPU
# sampled every second from /proc (bench/lib.sh). It prints one Markdown
# table and each attack's details; OUT keeps every file: samples.txt,
# honest-PHASE.json, PHASE.json (the attack's counters), PHASE-metrics.txt
# (the relay's /metrics at the attack's end), relay.log, table.md.
#
# "pair setup" is an estimate from keyrelay-load's percentiles: 2 × connect
# + join + handshake (a pair dials twice, creates, then joins and
# exchanges keys). Targets (issue 13): one source may not raise RSS by more
# than 256 MiB over the relay's RSS before the attack, nor pair setup p50
# above 100 ms; all sources together must keep the relay under 2 GiB.
#
# With the defaults it takes about 8 minutes. Environment (all optional):
#   ATTACKS              which to run, in order (default "mailbox rooms lockout floods")
#   BASE_DURATION        honest load alone before each attack (default 10s)
#   MAILBOX_SECONDS      each mailbox phase (default 90)
#   MAILBOX_SOURCES      sources of mailbox-many (default 127.0.1.1-127.0.1.32)
#   MAILBOX_WORKERS      rooms filled at once per source (default 8: 16 connections)
#   ROOMS_SECONDS        (default 30)   ROOMS_SOURCES (default 127.0.2.1-127.0.2.180)
#   ROOMS_RATE           creates a second per source (default 9)
#   LOCKOUT_SECONDS      (default 60; the finding's scale is 150)
#   LOCKOUT_JOIN_RATE    the stranger's joins a second (default 10)
#   LOCKOUT_RESUME_EVERY (default 5s)
#   FLOODS               which floods (default "ping big nested")
#   FLOOD_SECONDS        each flood (default 20)   FLOOD_CONNS (default 32)
#   HONEST_ADDRS         honest sources (default 127.0.0.16-127.0.0.115: a
#                        source may create 20 rooms per 10 minutes, so the
#                        honest load needs HONEST_RATE × seconds / 20 of them)
#   HONEST_RATE          honest pair arrivals a second (default 4)
#   RELAY_FLAGS          extra keyrelay flags (default none: default limits)
#   OUT                  output directory (default $TMPDIR/keyrelay-abuse-DATE)
#   SUMMARY_ONLY         if set, run nothing: print the summary of the run in OUT
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
ATTACKS=${ATTACKS:-mailbox rooms lockout floods}
BASE_DURATION=${BASE_DURATION:-10s}
MAILBOX_SECONDS=${MAILBOX_SECONDS:-90}
MAILBOX_SOURCES=${MAILBOX_SOURCES:-127.0.1.1-127.0.1.32}
MAILBOX_WORKERS=${MAILBOX_WORKERS:-8}
ROOMS_SECONDS=${ROOMS_SECONDS:-30}
ROOMS_SOURCES=${ROOMS_SOURCES:-127.0.2.1-127.0.2.180}
ROOMS_RATE=${ROOMS_RATE:-9}
LOCKOUT_SECONDS=${LOCKOUT_SECONDS:-60}
LOCKOUT_JOIN_RATE=${LOCKOUT_JOIN_RATE:-10}
LOCKOUT_RESUME_EVERY=${LOCKOUT_RESUME_EVERY:-5s}
FLOODS=${FLOODS:-ping big nested}
FLOOD_SECONDS=${FLOOD_SECONDS:-20}
FLOOD_CONNS=${FLOOD_CONNS:-32}
HONEST_ADDRS=${HONEST_ADDRS:-127.0.0.16-127.0.0.115}
bench_init abuse

# environment: what the summary says about the run.
environment() {
	echo "date $(date -u '+%F %T') UTC"
	echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/results' 2>/dev/null || echo ' (uncommitted changes)')"
	echo "cpus $(nproc)"
	echo "go $("$GO" env GOVERSION)"
	echo "relay_flags ${RELAY_FLAGS:-none}"
	echo "pending_bytes_flags $("$TMP/keyrelay" --help 2>&1 | grep -o -- '-max-pending-bytes[a-z-]*' | sort -u | tr '\n' ' ')"
	echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
	# shellcheck disable=SC2086
	plan=$(timeout 2 "$TMP/keyrelay" --addr 127.0.0.1:0 $RELAY_FLAGS 2>&1 | grep -m1 -o 'msg="memory plan".*') || true
	echo "memory_plan ${plan:-none}"
}

# run_phase NAME SECONDS AFTER CMD...: a fresh relay; the honest load alone
# (NAME-base); then CMD (the attack, with @URL@ and @ADDR@ replaced by the
# relay's) for SECONDS with the honest load beside it (NAME); then AFTER (a
# function, or :) while the relay still runs; its /metrics; the relay
# stopped. Appends "NAME idle_kib before_kib hwm_kib alive load1" to
# phases.txt.
run_phase() {
	local name=$1 secs=$2 after=$3
	shift 3
	echo "== $name: $secs s of attack ($(date -u +%T))" >&2
	RELAY_LOG=relay.log relay_start --log-level warn
	echo "== $name: relay on port $PORT" >>"$OUT/relay.log"
	local idle=$RSS_IDLE
	sample_start "$name-base"
	honest "$name-base" "$BASE_DURATION"
	sample_stop "$name-base"
	local before args=() a
	before=$(rss_kib)
	for a in "$@"; do
		a=${a//@URL@/$URL}
		args+=("${a//@ADDR@/127.0.0.1:$PORT}")
	done
	sample_start "$name"
	timeout $((secs + 60)) "$TMP/abuse" "${args[@]}" >"$OUT/$name.json" 2>"$OUT/$name.err" &
	local attacker=$!
	PIDS+=("$attacker")
	sleep 1
	honest "$name" "$((secs > 3 ? secs - 2 : 1))s"
	wait "$attacker" || echo "== $name: the attack program failed: $(tail -1 "$OUT/$name.err")" >&2
	"$after"
	local alive=yes hwm=0
	curl -fsS --interface 127.0.0.2 --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$OUT/$name-metrics.txt" 2>/dev/null || true
	sample_stop "$name"
	if relay_alive; then
		hwm=$(hwm_kib)
	else
		alive=no
		echo "== $name: THE RELAY DIED; see $OUT/relay.log" >&2
	fi
	echo "$name $idle $before $hwm $alive $(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/phases.txt"
	relay_stop
}

# after_rooms: an honest create from an address of its own, right after
# the rooms attack.
after_rooms() {
	"$TMP/abuse" create -url "$URL" -source 127.0.3.1 >"$OUT/rooms-honest-create.json" 2>>"$OUT/rooms.err" || true
}

# run_all: every attack of $ATTACKS, each phase on a fresh relay.
run_all() {
	bench_build
	"$GO" build -o "$TMP/abuse" ./bench/abuse
	environment >"$OUT/env.txt"
	: >"$OUT/phases.txt"
	for attack in $ATTACKS; do
		case $attack in
		mailbox)
			run_phase mailbox-one "$MAILBOX_SECONDS" : mailbox -url @URL@ -sources 127.0.0.1 \
				-workers "$MAILBOX_WORKERS" -duration "${MAILBOX_SECONDS}s"
			run_phase mailbox-many "$MAILBOX_SECONDS" : mailbox -url @URL@ -sources "$MAILBOX_SOURCES" \
				-workers "$MAILBOX_WORKERS" -duration "${MAILBOX_SECONDS}s"
			;;
		rooms)
			run_phase rooms "$ROOMS_SECONDS" after_rooms rooms -url @URL@ -sources "$ROOMS_SOURCES" \
				-rate "$ROOMS_RATE" -duration "${ROOMS_SECONDS}s"
			;;
		lockout)
			run_phase lockout "$LOCKOUT_SECONDS" : lockout -url @URL@ -join-rate "$LOCKOUT_JOIN_RATE" \
				-resume-every "$LOCKOUT_RESUME_EVERY" -duration "${LOCKOUT_SECONDS}s"
			;;
		floods)
			for mode in $FLOODS; do
				run_phase "flood-$mode" "$FLOOD_SECONDS" : flood -addr @ADDR@ -mode "$mode" \
					-conns "$FLOOD_CONNS" -duration "${FLOOD_SECONDS}s"
			done
			;;
		*)
			echo "unknown attack $attack (mailbox, rooms, lockout, floods)" >&2
			exit 2
			;;
		esac
	done
}

# summarise: the table and the details of the run in OUT.
summarise() {
	python3 - "$OUT" <<'EOF'
import json, math, os, sys
from benchlib import phase, honest, lat, setup, ms, honest_errors

out = sys.argv[1]
phases = [l.split() for l in open(os.path.join(out, "phases.txt"))]
env = dict(l.rstrip("\n").split(" ", 1) for l in open(os.path.join(out, "env.txt")) if " " in l)

def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return {}

def metrics(name):
    """The relay's /metrics at the end of the attack: {name{labels}: value}."""
    m = {}
    try:
        for l in open(os.path.join(out, f"{name}-metrics.txt")):
            if l.startswith("#") or not l.strip():
                continue
            k, _, v = l.rpartition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
    except OSError:
        pass
    return m

def n(x):
    return f"{x:,}".replace(",", " ") if isinstance(x, int) else str(x)

def counters(c, prefix=""):
    return ", ".join(f"{k[len(prefix):]} {n(v)}" for k, v in sorted(c.items()) if k.startswith(prefix)) or "none"

def mib(kib):
    return kib / 1024

TITLE = {
    "mailbox-one": "1 mailbox, one source",
    "mailbox-many": "1 mailbox, many sources",
    "rooms": "2 empty rooms, 180 sources",
    "lockout": "3 lockout",
    "flood-ping": "6 ping flood",
    "flood-big": "6 64 KiB frames",
    "flood-nested": "6 nested JSON",
}

def short(name, r):
    """The attack's main counters, for the table."""
    c = r.get("counts", {})
    if not r:
        return "no report"
    if name.startswith("mailbox"):
        return (f"{n(c.get('rooms_ready', 0))} rooms filled, {n(c.get('msg:sent', 0))} msgs ({r.get('accepted_body_mib', 0):.0f} MiB) accepted; "
                f"too_many_rooms {n(c.get('create:too_many_rooms', 0))}, mailbox_full {n(c.get('msg:mailbox_full', 0))}, rate_limited {n(c.get('msg:rate_limited', 0))}")
    if name == "rooms":
        hc = load("rooms-honest-create.json").get("result", "n/a")
        return (f"{n(c.get('rooms_created', 0))} rooms; refused: " + counters(c, "create:") +
                f"; honest create after: {hc}")
    if name == "lockout":
        refused = sum(v for k, v in c.items() if k.startswith("b:resume:"))
        return (f"resumes ok {c.get('b:resumes_ok', 0)} of {c.get('b:drops', 0)} drops, refused {refused}; "
                f"stranger: {counters({k: v for k, v in c.items() if k.startswith('stranger:') and k != 'stranger:joins_sent'}, 'stranger:')}")
    if name.startswith("flood"):
        closes = sum(v for k, v in c.items() if k.startswith("conn_ended_by_relay:"))
        secs = r.get("seconds") or float("nan")
        if r.get("mode") == "ping":
            read = c.get("pongs", 0) + metrics(name).get('keyrelay_throttled_total{budget="ping"}', 0)
        else:
            read = sum(v for k, v in c.items() if k.startswith("error:"))
        return (f"{n(round(c.get('frames_written', 0) / secs))} frames/s ({r.get('mb_written_per_second', 0):.0f} MB/s) written, "
                f"the relay read about {n(round(read / secs))}/s; {n(c.get('conns_opened', 0))} conns, {n(closes)} ended by the relay")
    return counters(c)

print(f"{env.get('date')}, commit {env.get('commit')}, {env.get('cpus')} cores, {env.get('go')}, load average at the start {env.get('load')}, "
      f"extra relay flags: {env.get('relay_flags')}; the relay's pending-bytes flags: {env.get('pending_bytes_flags', '').strip() or 'none'}; "
      f"its log: {env.get('memory_plan', 'n/a')}.")
print()
print("| attack | phase | relay RSS peak (growth) | relay CPU mean / peak | honest pairs ok / failed | pair setup p50 / p99 | handshake p50 / p99 | attack |")
print("|---|---|---:|---:|---:|---:|---:|---|")
verdicts = []
for name, idle, before, hwm, alive, load1 in phases:
    idle, before, hwm = int(idle), int(before), int(hwm)
    r = load(f"{name}.json")
    for p, label in ((f"{name}-base", "honest alone"), (name, "attack")):
        s, j = phase(out, p), honest(out, p)
        peak = s["rss_peak"]
        if p == name and alive == "yes":
            peak = max(peak, hwm)
        growth = "" if p != name else f" (+{mib(peak - before):.0f})"
        rss = f"{mib(peak):.0f} MiB{growth}" if not math.isnan(peak) else "n/a"
        if p == name and alive != "yes":
            rss += " RELAY DIED"
        ok = f"{j.get('pairs_completed', 'n/a')} / {j.get('pairs_failed', 'n/a')}"
        if p == name and "attacker_cpu_percent" in r:
            label += f" (attacker CPU {r['attacker_cpu_percent']:.0f}%)"
        cells = [TITLE.get(name, name) if p != name else "", label, rss,
                 f"{s['cpu_mean']:.0f}% / {s['cpu_peak']:.0f}%", ok,
                 f"{ms(setup(j, 'p50'))} / {ms(setup(j, 'p99'))} ms",
                 f"{ms(lat(j, 'handshake', 'p50'))} / {ms(lat(j, 'handshake', 'p99'))} ms",
                 short(name, r) if p == name else ""]
        print("| " + " | ".join(cells) + " |")
    s, j = phase(out, name), honest(out, name)
    grow = mib(max(s["rss_peak"], hwm) - before)
    p50 = setup(j, "p50")
    if name == "mailbox-many":
        v = f"relay peak {mib(max(s['rss_peak'], hwm)):.0f} MiB {'<' if max(s['rss_peak'], hwm) < 2 * 1024 * 1024 else '≥'} 2 GiB"
        met = max(s["rss_peak"], hwm) < 2 * 1024 * 1024 and alive == "yes"
    else:
        v = f"RSS +{grow:.0f} MiB {'≤' if grow <= 256 else '>'} 256 MiB, setup p50 {ms(p50)} ms {'≤' if p50 <= 100 else '>'} 100 ms"
        met = grow <= 256 and p50 <= 100 and alive == "yes"
    if name == "lockout":
        v += f", every resume succeeded: {r.get('bound_held', 'n/a')}"
        met = met and r.get("bound_held") == "yes"
    if name == "rooms":
        hc = load("rooms-honest-create.json").get("result", "n/a")
        v += f", honest create: {hc}"
        met = met and hc == "room"
    verdicts.append(f"- {TITLE.get(name, name)}: {'met' if met else 'MISSED'} ({v}{'' if alive == 'yes' else '; the relay died'}).")

print()
print("Targets (one source: RSS growth ≤ 256 MiB and pair setup p50 ≤ 100 ms; all sources: relay < 2 GiB):")
print("\n".join(verdicts))
print()
print("Details:")
for name, idle, before, hwm, alive, load1 in phases:
    r, m = load(f"{name}.json"), metrics(name)
    print()
    print(f"- **{name}**: relay RSS idle {mib(int(idle)):.0f} MiB, before the attack {mib(int(before)):.0f} MiB, "
          f"VmHWM {mib(int(hwm)):.0f} MiB{'' if alive == 'yes' else ' (the relay DIED: see relay.log)'}; "
          f"at the attack's end keyrelay_rooms {m.get('keyrelay_rooms', 'n/a')}, keyrelay_connections {m.get('keyrelay_connections', 'n/a')}, "
          f"heap in use {m.get('go_memstats_heap_inuse_bytes', float('nan')) / 2**20:.0f} MiB. "
          f"The whole machine's CPU busy, mean: {phase(out, name + '-base')['machine_mean']:.0f}% alone, {phase(out, name)['machine_mean']:.0f}% under attack "
          f"(of {env.get('cpus')}00%); load average {load1} at the end.")
    if r.get("error"):
        print(f"  The attack could not start: {r['error']}.")
    keys = {k: v for k, v in r.items() if k not in ("counts", "attack")}
    print(f"  Attack: {json.dumps(keys)}")
    print(f"  Counters: {counters(r.get('counts', {}))}.")
    if name == "rooms":
        print(f"  Honest create from 127.0.3.1 right after: {json.dumps(load('rooms-honest-create.json'))}")
    errs = {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("keyrelay_errors_total{")}
    if errs:
        print(f"  Relay error frames sent, by code: {', '.join(f'{k} {n(v)}' for k, v in sorted(errs.items()))}.")
    other = {k: int(v) for k, v in m.items() if k.startswith(("keyrelay_connections_closed_total{", "keyrelay_throttled_total{"))}
    if other:
        print(f"  Relay closes and throttles: {', '.join(f'{k} {n(v)}' for k, v in sorted(other.items()))}.")
    for line in honest_errors(out, (f"{name}-base", name)):
        print("  " + line)
EOF
}

[ -n "${SUMMARY_ONLY:-}" ] || run_all
summarise | tee "$OUT/table.md"
