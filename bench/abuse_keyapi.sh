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
# every second from /proc (bench/lib.sh does all but the attack). Output: a
# Markdown table on stdout, everything in OUT. Loopback only; every process
# it starts is killed on exit.
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
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
BASE_DURATION=${BASE_DURATION:-15s}
ATTACK_DURATION=${ATTACK_DURATION:-30s}
ATTACK_WORKERS=${ATTACK_WORKERS:-32}
bench_init abuse-keyapi
bench_build

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
build_standalone "$TMP/attack" "$TMP/attacker"

relay_start --log-level warn

sample_start base
honest base "$BASE_DURATION"
sample_stop base

sample_start attack
"$TMP/attacker" --url "http://127.0.0.1:$PORT" --workers "$ATTACK_WORKERS" --duration "$ATTACK_DURATION" >"$OUT/attack.json" &
ATTACKER=$!
PIDS+=("$ATTACKER")
sleep 1 # let the attack start
honest attack "$ATTACK_DURATION"
wait "$ATTACKER" || true
sample_stop attack
HWM=$(hwm_kib)

python3 - "$OUT" "$RSS_IDLE" "$HWM" "$ATTACK_WORKERS" <<'EOF'
import json, sys
from benchlib import header, row, honest_errors
out, idle, hwm, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
attack = json.load(open(out + "/attack.json"))
print(header())
print(row(out, "base", "honest load alone"))
print(row(out, "attack", f"with {workers} attackers (modp18, full-length)"))
print()
print(f"Relay RSS idle {idle/1024:.0f} MiB, peak (VmHWM) over the run {hwm/1024:.0f} MiB.")
codes = attack["codes"]; secs = attack["seconds"]
total = sum(codes.values())
print(f"Attacker: {total} responses in {secs:.0f} s ({total/secs:.0f}/s): " +
      ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())) + f"; transport errors {attack['errors']}.")
for line in honest_errors(out, ("base", "attack")):
    print(line)
EOF
