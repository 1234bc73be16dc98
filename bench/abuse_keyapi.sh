#!/usr/bin/env bash
# bench/abuse_keyapi.sh: issue 13's finding 4 at full scale. The tutorial
# key API's most expensive request, a modp18 shared key with a private
# exponent as long as q (about 1.3 s of CPU), sent by ATTACK_WORKERS workers
# from one loopback address (127.0.0.1) in a tight loop that ignores
# Retry-After, while an honest client from other loopback addresses
# (127.0.0.2 and up) sets up WebSocket pairs (keyrelay-load, handshake
# scenario, open loop).
#
# It builds keyrelay (the binary `go run ./cmd/keyrelay` would run) and
# keyrelay-load, starts the relay on a free 127.0.0.1 port with default
# limits, runs the honest load alone for BASE_DURATION (the baseline), then
# with the attack for ATTACK_DURATION, sampling the relay's RSS and CPU
# every second from /proc. Output: a Markdown table on stdout, everything
# in OUT. Loopback only; every process it starts is killed on exit.
#
# Environment (all optional):
#   BASE_DURATION    honest load alone (default 15s)
#   ATTACK_DURATION  honest load under attack (default 30s)
#   ATTACK_WORKERS   attacking workers from 127.0.0.1 (default 32)
#   HONEST_ADDRS     honest source addresses (default 127.0.0.2-127.0.0.11:
#                    --joins-per-ip allows one address 30 pairs a minute)
#   HONEST_RATE      honest pair arrivals per second (default 4)
#   RELAY_FLAGS      extra keyrelay flags (default none: default limits)
#   OUT              output directory (default $TMPDIR/keyrelay-abuse-keyapi-DATE)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BASE_DURATION=${BASE_DURATION:-15s}
ATTACK_DURATION=${ATTACK_DURATION:-30s}
ATTACK_WORKERS=${ATTACK_WORKERS:-32}
HONEST_ADDRS=${HONEST_ADDRS:-127.0.0.2-127.0.0.11}
HONEST_RATE=${HONEST_RATE:-4}
RELAY_FLAGS=${RELAY_FLAGS:-}
OUT=${OUT:-${TMPDIR:-/tmp}/keyrelay-abuse-keyapi-$(date -u +%F)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
"$GO" build -o "$TMP/keyrelay" ./cmd/keyrelay
"$GO" build -o "$TMP/keyrelay-load" ./cmd/keyrelay-load

# The attacker: standard library only, built outside the module.
mkdir -p "$TMP/attack"
cat >"$TMP/attack/main.go" <<'EOF'
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "", "relay base URL")
	workers := flag.Int("workers", 32, "workers")
	d := flag.Duration("duration", 30*time.Second, "duration")
	flag.Parse()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: *workers}}
	// A valid modp18 public key, from the relay itself.
	resp, err := client.Get(*base + "/generate-keys?group=18")
	if err != nil {
		panic(err)
	}
	var kp struct{ PublicKey string `json:"public_key"` }
	json.NewDecoder(resp.Body).Decode(&kp)
	resp.Body.Close()
	if kp.PublicKey == "" {
		panic("no public key: " + resp.Status)
	}
	x := make([]byte, 1024)
	rand.Read(x)
	x[0] = 0x3f // a full-length exponent below q
	body, _ := json.Marshal(map[string]any{"local_private_key": new(big.Int).SetBytes(x).Text(16), "remote_public_key": kp.PublicKey, "group": 18})
	var mu sync.Mutex
	codes := map[int]int{}
	var errs atomic.Int64
	stop := time.Now().Add(*d)
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp, err := client.Post(*base+"/generate-shared-key", "application/json", bytes.NewReader(body))
				if err != nil {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	out, _ := json.Marshal(map[string]any{"codes": codes, "errors": errs.Load(), "seconds": d.Seconds()})
	fmt.Println(string(out))
}
EOF
(cd "$TMP/attack" && GO111MODULE=off "$GO" build -o "$TMP/attacker" main.go 2>/dev/null ||
	(cd "$TMP/attack" && "$GO" mod init attack >/dev/null 2>&1 && "$GO" build -o "$TMP/attacker" .))

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
"$TMP/keyrelay" --addr "127.0.0.1:$PORT" --log-level warn $RELAY_FLAGS 2>"$OUT/relay.log" &
RELAY=$!
PIDS+=("$RELAY")
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

TCK=$(getconf CLK_TCK)
# sample PHASE: one line a second, "phase t rss_kib cpu_percent", until
# the file $TMP/stop-sampling exists.
sample() {
	local phase=$1 last_t last_ticks t ticks rss
	last_t=$(date +%s.%N)
	last_ticks=$(awk '{print $14+$15}' /proc/$RELAY/stat)
	while [ ! -e "$TMP/stop-$phase" ]; do
		sleep 1
		t=$(date +%s.%N)
		ticks=$(awk '{print $14+$15}' /proc/$RELAY/stat)
		rss=$(awk '/^VmRSS/ {print $2}' /proc/$RELAY/status)
		echo "$phase $t $rss $(awk -v a="$last_ticks" -v b="$ticks" -v s="$last_t" -v e="$t" -v k="$TCK" 'BEGIN {printf "%.1f", (b-a)/k/(e-s)*100}')"
		last_t=$t
		last_ticks=$ticks
	done >>"$OUT/samples.txt"
}

honest() { # honest PHASE DURATION
	"$TMP/keyrelay-load" --url "ws://127.0.0.1:$PORT/v1/ws" --source-addrs "$HONEST_ADDRS" \
		--scenario handshake --pairs 0 --duration "$2" --rate "$HONEST_RATE" --concurrency 16 \
		--max-error-rate 1 --json "$OUT/honest-$1.json" >/dev/null 2>"$OUT/honest-$1.log" || true
}

: >"$OUT/samples.txt"
RSS_IDLE=$(awk '/^VmRSS/ {print $2}' /proc/$RELAY/status)
sample base &
PIDS+=($!)
honest base "$BASE_DURATION"
touch "$TMP/stop-base"

sample attack &
PIDS+=($!)
"$TMP/attacker" --url "http://127.0.0.1:$PORT" --workers "$ATTACK_WORKERS" --duration "$ATTACK_DURATION" >"$OUT/attack.json" &
ATTACKER=$!
PIDS+=("$ATTACKER")
sleep 1 # let the attack start
honest attack "$ATTACK_DURATION"
wait "$ATTACKER" || true
touch "$TMP/stop-attack"
sleep 1.2
HWM=$(awk '/^VmHWM/ {print $2}' /proc/$RELAY/status)

python3 - "$OUT" "$RSS_IDLE" "$HWM" "$ATTACK_WORKERS" <<'EOF'
import json, sys
out, idle, hwm, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = [l.split() for l in open(out + "/samples.txt")]
def phase(p):
    s = [(int(r[2]), float(r[3])) for r in rows if r[0] == p]
    return max(x[0] for x in s), sum(x[1] for x in s) / len(s), max(x[1] for x in s)
def lat(p):
    j = json.load(open(f"{out}/honest-{p}.json"))
    L = j["latency_ms"]
    g = lambda m, q: L.get(m, {}).get(q, float("nan"))
    return j, g
attack = json.load(open(out + "/attack.json"))
print(f"| phase | relay RSS peak | relay CPU mean / peak | honest pairs ok / failed | connect p50 / p99 | join p50 / p99 | handshake p50 / p99 |")
print(f"|---|---|---|---|---|---|---|")
for p, name in (("base", "honest load alone"), ("attack", f"with {workers} attackers (modp18, full-length)")):
    rss, cpu, cpupk = phase(p)
    j, g = lat(p)
    print(f"| {name} | {rss/1024:.0f} MiB | {cpu:.0f}% / {cpupk:.0f}% of a core | {j['pairs_completed']} / {j['pairs_failed']} | "
          f"{g('connect','p50'):.1f} / {g('connect','p99'):.1f} ms | {g('join','p50'):.1f} / {g('join','p99'):.1f} ms | {g('handshake','p50'):.1f} / {g('handshake','p99'):.1f} ms |")
print()
print(f"Relay RSS idle {idle/1024:.0f} MiB, peak (VmHWM) over the run {hwm/1024:.0f} MiB.")
codes = attack["codes"]; secs = attack["seconds"]
total = sum(codes.values())
print(f"Attacker: {total} responses in {secs:.0f} s ({total/secs:.0f}/s): " +
      ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())) + f"; transport errors {attack['errors']}.")
for p in ("base", "attack"):
    j = json.load(open(f"{out}/honest-{p}.json"))
    if j.get("errors"):
        print(f"Honest errors ({p}): {j['errors']}")
EOF
