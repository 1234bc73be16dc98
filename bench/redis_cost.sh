#!/usr/bin/env bash
# bench/redis_cost.sh: what one handshake and one message cost Redis today,
# the baseline of issue 16 ("cost per operation, measured"). One
# redis-server and one relay on it (per-client limits lifted), on loopback.
# Two phases, each after CONFIG RESETSTAT: HANDSHAKES pairs of the
# handshake scenario (connect both peers, create, join, keys, close), then
# CHAT_PAIRS pairs of the chat scenario, each CHAT_MESSAGES messages of
# SIZE bytes each way. For each phase it reads INFO commandstats (every
# command, those run inside scripts included) and the Redis process's CPU
# (used_cpu_sys + used_cpu_user), and divides by the operations: per
# handshake, and per message once the chat phase's handshakes are taken
# out at the handshake phase's cost; and MEMORY USAGE of a room's hash
# after a handshake (its mailboxes are empty then). Output: Markdown on
# stdout; raw INFO in OUT.
#
# Environment (all optional):
#   HANDSHAKES     pairs in the handshake phase (default 500)
#   CHAT_PAIRS     pairs in the chat phase (default 50)
#   CHAT_MESSAGES  messages each way per chat pair (default 100)
#   SIZE           bytes per message (default 256)
#   OUT            output directory (default $TMPDIR/keyrelay-redis-cost-DATE)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init redis-cost
HANDSHAKES=${HANDSHAKES:-500}
CHAT_PAIRS=${CHAT_PAIRS:-50}
CHAT_MESSAGES=${CHAT_MESSAGES:-100}
SIZE=${SIZE:-256}
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
bench_build

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
rcli() { redis-cli -p "$RPORT" "$@"; }
for _ in $(seq 50); do
	[ "$(rcli ping 2>/dev/null)" = PONG ] && break
	sleep 0.1
done
[ "$(rcli ping 2>/dev/null)" = PONG ] || { echo "redis-server did not start; see $OUT/redis.log" >&2; exit 1; }
relay_start --redis-url "redis://127.0.0.1:$RPORT" --max-conns-per-ip -1 --max-accept-per-ip -1 --joins-per-ip -1 \
	--joins-per-room -1 --rooms-per-ip -1 --key-reuse-window 0 --frames-per-second 100000 \
	--bytes-per-second 1073741824 --max-rooms -1

# phase NAME LOAD-FLAGS...: resets Redis's statistics, runs keyrelay-load,
# and keeps INFO commandstats and cpu before and after.
phase() {
	local name=$1
	shift
	rcli CONFIG RESETSTAT >/dev/null
	rcli INFO cpu >"$OUT/$name-cpu-before.txt"
	"$TMP/keyrelay-load" --url "$URL" --metrics-url none --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1 || true # failures are in the summary
	rcli INFO cpu >"$OUT/$name-cpu-after.txt"
	rcli INFO commandstats >"$OUT/$name-commandstats.txt"
}
phase handshake --scenario handshake --pairs "$HANDSHAKES" --concurrency 10
# The handshake phase's rooms stay in Redis until their members' grace
# ends (2 min): the memory of their keys is a room's after a handshake.
for key in $(rcli --scan --pattern 'keyrelay:room:*'); do
	rcli MEMORY USAGE "$key" SAMPLES 0
done >"$OUT/memory.txt"
rcli --scan --pattern 'keyrelay:*' | wc -l >"$OUT/keys.txt"
phase chat --scenario chat --pairs "$CHAT_PAIRS" --concurrency "$CHAT_PAIRS" --messages "$CHAT_MESSAGES" --size "$SIZE"

relay_stop

python3 - "$OUT" "$HANDSHAKES" "$CHAT_PAIRS" "$CHAT_MESSAGES" "$SIZE" <<'PY'
import json, re, sys
out, hs, pairs, msgs, size = sys.argv[1], *map(int, sys.argv[2:])

def cpu(name):
    def read(f):
        d = dict(l.strip().split(":", 1) for l in open(f) if ":" in l)
        return float(d["used_cpu_sys"]) + float(d["used_cpu_user"])
    return read(f"{out}/{name}-cpu-after.txt") - read(f"{out}/{name}-cpu-before.txt")

def stats(name):
    s = {}
    for l in open(f"{out}/{name}-commandstats.txt"):
        m = re.match(r"cmdstat_(\w+(?:\|\w+)?):calls=(\d+),usec=(\d+)", l.strip())
        if m:
            s[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return s

def completed(name):
    j = json.load(open(f"{out}/{name}.json"))
    return j.get("pairs_completed", 0), j.get("pairs_failed", 0)

h, c = stats("handshake"), stats("chat")
hs_ok, hs_fail = completed("handshake")
chat_ok, chat_fail = completed("chat")
messages = chat_ok * msgs * 2
def per(s, n, sub=None, k=0):
    rows = {}
    for cmd, (calls, usec) in s.items():
        base = sub.get(cmd, (0, 0)) if sub else (0, 0)
        rows[cmd] = ((calls - k * base[0]) / n, (usec - k * base[1]) / n)
    return rows
ph = per(h, hs_ok)
pm = per(c, messages, h, chat_ok / max(hs_ok, 1))
cpu_h = cpu("handshake") * 1e6 / hs_ok
cpu_m = (cpu("chat") * 1e6 - chat_ok * cpu_h) / messages
def calls(rows):
    return sum(v[0] for v in rows.values())
print(f"Handshake phase: {hs_ok} pairs completed, {hs_fail} failed. Chat phase: {chat_ok} pairs, {messages} messages of {size} bytes, {chat_fail} failed.\n")
print("| per | Redis CPU (µs) | commands (scripts' included) | EVALSHA (round trips with a script) |")
print("| --- | ---: | ---: | ---: |")
print(f"| handshake (2 peers: create, join, 2 keys, 2 closes) | {cpu_h:.0f} | {calls(ph):.1f} | {ph.get('evalsha', (0, 0))[0]:.1f} |")
print(f"| message (append, delivery, ack) | {cpu_m:.0f} | {calls(pm):.1f} | {pm.get('evalsha', (0, 0))[0]:.1f} |")
print("\nCommands per message, most first:\n")
print("| command | calls per message | µs per message (Redis's own count) |")
print("| --- | ---: | ---: |")
for cmd, (n, us) in sorted(pm.items(), key=lambda kv: -kv[1][0]):
    if n >= 0.05:
        print(f"| {cmd} | {n:.2f} | {us:.1f} |")
mem = [int(l) for l in open(f"{out}/memory.txt") if l.strip()]
if mem:
    print(f"\nMemory of a room's hash after a handshake (MEMORY USAGE, {len(mem)} rooms): mean {sum(mem) / len(mem):.0f} bytes, max {max(mem)}; "
          f"keys in Redis then: {open(f'{out}/keys.txt').read().strip()}.")
PY
