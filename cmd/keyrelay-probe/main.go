// Command keyrelay-probe is a container health check for keyrelay: it
// asks a relay's health endpoint and exits 0 if the answer is 200, 1
// otherwise, saying why on stderr. The image the Dockerfile builds is
// distroless (no shell, curl or wget), so docker-compose.yml's health
// checks run this instead; it is built from the standard library only.
//
//	keyrelay-probe [--timeout 2s] [URL]
//
// URL defaults to http://127.0.0.1:8080/readyz, the readiness of a relay
// on --addr :8080 in the same container: 200 once its session store
// accepts writes, 503 while it cannot reach Redis or shuts down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// defaultURL is the readiness endpoint of a relay on --addr :8080.
const defaultURL = "http://127.0.0.1:8080/readyz"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keyrelay-probe:", err)
		}
		os.Exit(1)
	}
}

// run probes the URL in args and returns nil if it answered 200 within the
// timeout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keyrelay-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: keyrelay-probe [--timeout 2s] [URL]\n\nExits 0 if GET URL answers 200 (default URL: %s), else 1.\n\n", defaultURL)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	target := defaultURL
	switch fs.NArg() {
	case 0:
	case 1:
		target = fs.Arg(0)
	default:
		fs.Usage()
		return errors.New("at most one URL")
	}
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", target)
	}
	if *timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the probe asks the relay itself.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %q", target, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s: %s\n", target, resp.Status)
	return nil
}
