package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrelay/keyrelay/internal/loadstats"
	"github.com/keyrelay/keyrelay/relay/relaytest"
	"github.com/keyrelay/keyrelay/session/redistest"
	"github.com/keyrelay/keyrelay/wire"
)

// Chat runs of the resume tests: every pair lasts about 2 s (40 round
// trips at 20 a second), so that a drop made once the relay has relayed
// a few messages lands mid-chat for all of them.
const (
	resumePairs    = 6
	resumeMessages = 40
)

var resumeChat = []string{"--scenario", "chat", "--pairs", "6", "--concurrency", "6", "--messages", "40", "--message-rate", "20", "--size", "64"}

// background runs keyrelay-load with args plus --json and --event-log in a
// goroutine; wait returns the summary, the event log's events and run's
// error.
func background(t *testing.T, args ...string) (wait func() (summary, []event, error)) {
	t.Helper()
	dir := t.TempDir()
	jsonPath, logPath := filepath.Join(dir, "summary.json"), filepath.Join(dir, "events.jsonl")
	args = append(args, "--json", jsonPath, "--event-log", logPath)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, args, noEnv, io.Discard, &stderr) }()
	return func() (summary, []event, error) {
		t.Helper()
		defer cancel()
		err := <-done
		data, rerr := os.ReadFile(jsonPath)
		if rerr != nil {
			t.Fatalf("run(%q) = %v, and no JSON summary: %v\nstderr: %s", args, err, rerr, stderr.String())
		}
		var sum summary
		if jerr := json.Unmarshal(data, &sum); jerr != nil {
			t.Fatalf("summary: %v\n%s", jerr, data)
		}
		return sum, readEvents(t, logPath), err
	}
}

// readEvents reads an event log.
func readEvents(t *testing.T, path string) []event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("event log line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return evs
}

// counter reads counter name from reg (0 if it has no value yet).
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// waitRelayed waits until reg's relay has relayed at least n messages.
func waitRelayed(t *testing.T, reg *prometheus.Registry, n float64) {
	t.Helper()
	deadline := time.Now().Add(testTimeout / 2)
	for counter(t, reg, "keyrelay_messages_relayed_total") < n {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not relay %v messages", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkNoLoss checks a --resume chat run in which every pair rode out the
// drops: all pairs completed, every message delivered exactly once, and
// the wanted drops all resumed, each with a resume latency sample and an
// event.
func checkNoLoss(t *testing.T, sum summary, events []event, drops int, close string) {
	t.Helper()
	checkClean(t, sum, resumePairs, 2*resumePairs*resumeMessages, metricRoundTrip, metricResume)
	d := sum.Delivery
	if d == nil {
		t.Fatal("no delivery figures")
	}
	all := int64(2 * resumePairs * resumeMessages)
	if d.Sent != all || d.Confirmed+d.Unconfirmed != all || d.Delivered != all || d.Lost != 0 || d.UnconfirmedLost != 0 || d.Duplicated != 0 || d.Refused != 0 {
		t.Errorf("delivery %+v, want %d sent and delivered, none lost, duplicated or refused", *d, all)
	}
	dr := sum.Drops
	if dr == nil {
		t.Fatal("no drop figures")
	}
	if dr.Drops != int64(drops) || dr.Resumed != int64(drops) || dr.Failed != 0 || dr.ByClose[close] != int64(drops) || dr.Attempts < int64(drops) {
		t.Errorf("drops %+v, want %d, all resumed, by close %s", *dr, drops, close)
	}
	if got := sum.Latency[metricResume].Count; got != int64(drops) {
		t.Errorf("resume latency samples = %d, want %d", got, drops)
	}
	resumes := 0
	for _, e := range events {
		switch e.Event {
		case eventResume:
			resumes++
			if e.Close != close || e.Attempts < 1 || e.MS <= 0 || e.DropT <= 0 || e.DropT > e.T {
				t.Errorf("resume event %+v: want close %s, attempts, a drop time before the resume", e, close)
			}
		case eventDelayed:
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	if resumes != drops {
		t.Errorf("%d resume events, want %d", resumes, drops)
	}
}

// TestResumeRelayClosed splits every chat pair across two relays on one
// Redis and closes one of them mid-chat, as SIGTERM does (close 1001 to
// every client; the closed relay goes on accepting WebSockets only to
// close them again). With --resume, the peer on it resumes on the other
// relay, and nothing is lost or repeated; without, the pairs fail.
func TestResumeRelayClosed(t *testing.T) {
	addr := redistest.Start(t)
	relays := func(t *testing.T) (*relaytest.Server, string) {
		cfg := loadConfig
		cfg.PingInterval = 100 * time.Millisecond
		r1 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, ""), cfg)
		r2 := relaytest.NewServer(t, relaytest.NewRedisStore(t, addr, ""), cfg)
		return r1, r1.URL + "," + r2.URL
	}

	t.Run("resume", func(t *testing.T) {
		r1, urls := relays(t)
		wait := background(t, append([]string{"--url", urls, "--resume"}, resumeChat...)...)
		waitRelayed(t, r1.Registry, 4*resumePairs)
		r1.Relay.Close()
		sum, events, err := wait()
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		// Each pair has one peer on each relay.
		checkNoLoss(t, sum, events, resumePairs, "1001")
	})

	t.Run("without resume", func(t *testing.T) {
		r1, urls := relays(t)
		wait := background(t, append([]string{"--url", urls, "--max-error-rate", "1"}, resumeChat...)...)
		waitRelayed(t, r1.Registry, 4*resumePairs)
		r1.Relay.Close()
		sum, events, err := wait()
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if sum.PairsFailed != resumePairs || sum.Errors["close_1001"] != resumePairs {
			t.Errorf("failed %d, errors %v; want all %d pairs failed with close_1001", sum.PairsFailed, sum.Errors, resumePairs)
		}
		if sum.Drops != nil {
			t.Errorf("drops %+v without --resume", *sum.Drops)
		}
		if d := sum.Delivery; d == nil || d.Duplicated != 0 || d.Delivered == 0 {
			t.Errorf("delivery %+v, want some delivered, none duplicated", d)
		}
		failed := 0
		for _, e := range events {
			if e.Event == eventPairFailed {
				failed++
			}
		}
		if failed != resumePairs {
			t.Errorf("%d pair_failed events, want %d", failed, resumePairs)
		}
	})
}

// TestResumeCut cuts every connection mid-chat (a reset, no close frame,
// as when a relay is killed or the network fails) between the pairs and
// one relay: with --resume both peers of every pair resume, through the
// same proxy, and nothing is lost or repeated.
func TestResumeCut(t *testing.T) {
	rs := startRelay(t, loadConfig)
	px := newCutProxy(t, strings.TrimPrefix(strings.TrimSuffix(rs.URL, wire.Path), "ws://"))
	wait := background(t, append([]string{"--url", "ws://" + px.addr() + wire.Path, "--resume"}, resumeChat...)...)
	waitRelayed(t, rs.Registry, 8*resumePairs)
	px.cut()
	sum, events, err := wait()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	checkNoLoss(t, sum, events, 2*resumePairs, "none")
}

// TestResumeChurn runs churn with --resume through a proxy that is cut
// repeatedly: the churn's own drops and resumes still check exactly-once
// delivery, and the pairs ride out the cuts.
//
// One failure is allowed, because the protocol cannot avoid it: a join
// whose room reply is cut off after the relay gave B the seat. B, which
// never got the reply, has no resume token; it joins again on a new
// connection and gets room_full, its first seat being held for the grace
// period. Such a pair must show B's setup started over.
func TestResumeChurn(t *testing.T) {
	rs := startRelay(t, loadConfig)
	px := newCutProxy(t, strings.TrimPrefix(strings.TrimSuffix(rs.URL, wire.Path), "ws://"))
	wait := background(t, "--url", "ws://"+px.addr()+wire.Path, "--resume", "--scenario", "churn", "--max-error-rate", "1",
		"--pairs", "0", "--duration", "1500ms", "--concurrency", "4", "--messages", "4", "--message-rate", "40", "--size", "64")
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		px.cut()
	}
	sum, events, err := wait()
	if err != nil {
		t.Fatalf("run: %v (errors %v, %v)", err, sum.Errors, sum.ErrorExamples)
	}
	if sum.PairsFailed != sum.Errors[string(wire.CodeRoomFull)] || sum.PairsCompleted == 0 || sum.Resumes == 0 {
		t.Errorf("pairs completed %d, failed %d (%v), churn resumes %d; want some, none but room_full, some", sum.PairsCompleted, sum.PairsFailed, sum.ErrorExamples, sum.Resumes)
	}
	joinRedials := map[int]bool{}
	for _, e := range events {
		switch {
		case e.Event == eventRedial && e.Peer == "b":
			joinRedials[e.Pair] = true
		case e.Event == eventPairFailed && !joinRedials[e.Pair]:
			t.Errorf("pair %d failed (%s: %s) without a join started over", e.Pair, e.Code, e.Err)
		}
	}
	if d := sum.Delivery; d == nil || d.Lost != 0 || d.UnconfirmedLost != 0 || d.Duplicated != 0 || d.Delivered != d.Sent {
		t.Errorf("delivery %+v, want all delivered once", d)
	}
	if dr := sum.Drops; dr == nil || dr.Drops == 0 || dr.Resumed+dr.Redials == 0 {
		t.Errorf("drops %+v, want some, resumed or started over", dr)
	}
}

// cutProxy forwards TCP connections to a target until cut resets them
// all, as a killed relay or a network failure would: no close frame.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns []*net.TCPConn
}

// newCutProxy starts a proxy to target (host:port), closed when the test
// ends.
func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &cutProxy{ln: ln, target: target}
	px.wg.Go(px.serve)
	t.Cleanup(func() {
		ln.Close()
		px.cut()
		px.wg.Wait()
	})
	return px
}

func (px *cutProxy) addr() string { return px.ln.Addr().String() }

func (px *cutProxy) serve() {
	for {
		c, err := px.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", px.target)
		if err != nil {
			c.Close()
			continue
		}
		px.mu.Lock()
		px.conns = append(px.conns, c.(*net.TCPConn), up.(*net.TCPConn))
		px.mu.Unlock()
		for _, p := range [][2]net.Conn{{c, up}, {up, c}} {
			px.wg.Go(func() {
				io.Copy(p[0], p[1])
				p[0].Close()
			})
		}
	}
}

// cut resets every connection made so far.
func (px *cutProxy) cut() {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, c := range px.conns {
		c.SetLinger(0)
		c.Close()
	}
	px.conns = nil
}

// TestFlow checks the delivery accounting of one flow.
func TestFlow(t *testing.T) {
	f := newFlow("a", 50*time.Millisecond)
	var pts [][]byte
	for i, st := range []sendState{stateConfirmed, stateUnconfirmed, stateConfirmed, stateRefused, stateConfirmed, stateUnconfirmed} {
		idx, pt := f.next(16)
		if idx != i || len(pt) != 16 {
			t.Fatalf("next = %d, %d bytes; want %d, 16", idx, len(pt), i)
		}
		f.sent(idx, st, uint64(idx+1))
		pts = append(pts, pt)
	}
	now := time.Now()
	for _, tt := range []struct {
		name    string
		pt      []byte
		at      time.Time
		want    arrival
		wantErr error
	}{
		{"first", pts[0], now, arrival{index: 0}, nil},
		{"duplicate", pts[0], now, arrival{index: 0, duplicate: true}, nil},
		{"unconfirmed, late", pts[1], now.Add(time.Second), arrival{index: 1, delayed: true}, nil},
		{"overtakes 2", pts[4], now, arrival{index: 4}, errOutOfOrder},
		{"changed", append(pts[2][:15:15], pts[2][15]^1), now, arrival{}, loadstats.ErrMismatch},
		{"short", pts[2][:4], now, arrival{}, loadstats.ErrMismatch},
		{"never sent", append([]byte{0, 0, 0, 0, 0, 0, 0, 9}, pts[2][8:]...), now, arrival{}, loadstats.ErrMismatch},
		{"in order", pts[2], now, arrival{index: 2}, nil},
	} {
		a, err := f.deliver(tt.pt, tt.at)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: deliver error %v, want %v", tt.name, err, tt.wantErr)
		}
		a.lag = 0
		if tt.wantErr == nil || errors.Is(tt.wantErr, errOutOfOrder) {
			if a != tt.want {
				t.Errorf("%s: arrival %+v, want %+v", tt.name, a, tt.want)
			}
		}
	}
	d, lost := f.counts()
	want := deliveryCounts{Sent: 5, Confirmed: 3, Unconfirmed: 2, Refused: 1, Delivered: 4, Duplicated: 1, Delayed: 1, UnconfirmedLost: 1}
	d.maxLag = 0
	if d != want {
		t.Errorf("counts %+v, want %+v", d, want)
	}
	if len(lost) != 1 || lost[0] != (lostMsg{index: 5, unconfirmed: true}) {
		t.Errorf("lost %+v, want message 5, unconfirmed", lost)
	}

	// A message that confirmed and never arrived is lost, with its seq.
	g := newFlow("b", time.Second)
	i, _ := g.next(1) // shorter than an index: the index's length
	g.sent(i, stateConfirmed, 42)
	if d, lost := g.counts(); d.Lost != 1 || len(lost) != 1 || lost[0] != (lostMsg{index: 0, seq: 42}) {
		t.Errorf("counts %+v, lost %+v; want message 0 (seq 42) lost", d, lost)
	}
}
