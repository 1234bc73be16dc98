package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of starting and stopping processes, generous for two busy cores.
const (
	startTimeout = 20 * time.Second // for a started process to answer
	stopTimeout  = 10 * time.Second // for SIGTERM, before SIGKILL
)

// binDir holds the binaries the tests build, once per run; TestMain
// removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// relayBinary returns the keyrelay binary, built once for all tests.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "keyrelay-deploy-")
		if buildErr != nil {
			return
		}
		// go test puts its own GOROOT/bin first in the PATH of test binaries.
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, "keyrelay"), "github.com/keyrelay/keyrelay/cmd/keyrelay")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/keyrelay: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "keyrelay")
}

// proc is a process owned by a test: stopped when the test ends, its
// output logged if the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer   // stdout and stderr
	done chan struct{} // closed once it has exited
	err  error         // Wait's result; written before done is closed
}

// startProc starts argv with the environment less KEYRELAY_* variables
// (flags win over them, but they could set what the flags leave at the
// default: the tests' processes stay hermetic).
func startProc(t *testing.T, name string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYRELAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &proc{name: name, cmd: cmd, out: new(syncBuffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits for the
// process to exit.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// httpClient makes the tests' plain HTTP requests.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// get returns the status and body of GET url.
func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), err
}

// awaitOK waits until GET url answers 200 while p runs.
func awaitOK(p *proc, url string) error {
	deadline := time.Now().Add(startTimeout)
	last := "no answer"
	for {
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before %s answered 200", p.name, p.err, url)
		}
		code, _, err := get(context.Background(), url)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strconv.Itoa(code)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s did not answer 200 within %v (last: %s)", p.name, url, startTimeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listeningRE finds the relay's address in its start-up line, which says
// where it listens (cmd/keyrelay: `msg=listening addr=…`).
var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// relayProc is a keyrelay process.
type relayProc struct {
	*proc
	addr string // 127.0.0.1:port
}

// startRelay starts keyrelay on a loopback port of the kernel's choosing
// (--addr 127.0.0.1:0: no port is guessed), sharing the Redis at
// redisURL, with the extra flags, and waits until /readyz answers 200.
func startRelay(t *testing.T, name, redisURL string, extra ...string) *relayProc {
	t.Helper()
	argv := append([]string{relayBinary(t), "--addr", "127.0.0.1:0", "--redis-url", redisURL, "--log-format", "text"}, extra...)
	p := &relayProc{proc: startProc(t, name, argv...)}
	deadline := time.Now().Add(startTimeout)
	for p.addr == "" {
		if m := listeningRE.FindStringSubmatch(p.out.String()); m != nil {
			p.addr = m[1]
			break
		}
		if p.exited() {
			t.Fatalf("%s exited before listening: %v\n%s", name, p.err, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no listening line within %v\n%s", name, startTimeout, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := awaitOK(p.proc, "http://"+p.addr+"/readyz"); err != nil {
		t.Fatal(err)
	}
	return p
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
