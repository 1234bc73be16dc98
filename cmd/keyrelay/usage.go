package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/internal/buildinfo"
	"github.com/keyrelay/keyrelay/relay"
)

// flagGroups orders the flags in --help by what they are about. Every
// flag is in exactly one group (TestHelpGroupsEveryFlag).
var flagGroups = []struct {
	title string
	names []string
}{
	{"Network and HTTP", []string{"addr", "tls-cert", "tls-key", "hsts-max-age", "trusted-proxies", "allowed-origins",
		"http-read-header-timeout", "http-read-timeout", "http-write-timeout", "http-idle-timeout", "max-header-bytes",
		"metrics-addr", "debug-addr"}},
	{"Redis (many instances)", []string{"redis-url", "redis-allow-eviction", "instance-lease", "redis-partitions", "redis-wait-replicas", "redis-wait-timeout"}},
	{"Rooms and the protocol", []string{"room-ttl", "resume-grace", "empty-room-ttl", "client-room-ids", "min-room-id-length",
		"allow-legacy-groups", "ping-interval", "write-timeout", "slow-reader-timeout", "key-reuse-window", "ack-delay"}},
	{"Limits per client", []string{"max-frame-bytes", "frames-per-second", "bytes-per-second", "max-conns-per-ip",
		"max-accept-per-ip", "joins-per-ip", "join-window", "joins-per-room", "room-window", "rooms-per-ip",
		"max-pending", "max-pending-bytes", "max-pending-bytes-per-ip", "send-queue", "max-queued-bytes"}},
	{"Limits in total (memory)", []string{"max-rooms", "max-conns-total", "max-pending-bytes-total", "max-queued-bytes-total"}},
	{"The tutorial's key API", []string{"key-api", "key-api-addr", "key-api-get", "cors-origins", "key-api-rate",
		"key-api-burst", "key-api-slots", "key-api-work", "key-api-wait", "key-api-queue"}},
	{"Logging and the program", []string{"log-level", "log-format", "version"}},
}

// writeUsage writes --help: what keyrelay is, how to run it, and its flags
// by group, each with its default and environment variable.
func writeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `keyrelay: a relay for end-to-end encrypted chats. Two peers meet in a room,
exchange Diffie-Hellman public keys (checked by the relay, never the private
ones) and then messages the relay cannot read. It also serves the browser
page (/) and the tutorial's HTTP key API.

Usage:
  keyrelay [flags]

Examples:
  keyrelay                                   one instance, state in memory, on :8080
  keyrelay --addr 127.0.0.1:9000             another address
  keyrelay --redis-url redis://127.0.0.1:6379  instances sharing one Redis
  keyrelay --tls-cert cert.pem --tls-key key.pem --addr :443

Every flag can also be set with the environment variable named after it
(KEYRELAY_ and the flag's name in capitals, - as _); the flag wins.
`)
	for _, g := range flagGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			typ, usage := flag.UnquoteUsage(f)
			if _, ok := f.Value.(*durationValue); ok {
				typ = "duration"
			}
			line := "  --" + f.Name
			if typ != "" {
				line += " " + typ
			}
			fmt.Fprintln(w, line)
			fmt.Fprintf(w, "      %s", usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		}
	}
}

// version returns the program's version (internal/buildinfo).
func version() string { return buildinfo.Line("keyrelay") }

// errVersion is parseConfig's answer to --version: the version is printed,
// and keyrelay exits 0.
var errVersion = errors.New("version printed")

// durationValue is a duration flag whose errors say what a duration looks
// like.
type durationValue time.Duration

func (d *durationValue) String() string { return time.Duration(*d).String() }

func (d *durationValue) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

// parseDuration is time.ParseDuration with an error that shows the form.
func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: give a number and a unit, such as 30s, 2m or 1h", s)
	}
	return v, nil
}

// openURL returns the URL a person opens to reach a listener on addr: a
// wildcard address as localhost.
func openURL(scheme string, addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}

// groupNames lists the Diffie-Hellman groups rooms may use.
func groupNames(legacy bool) string {
	var names []string
	for _, g := range dh.Groups() {
		if relay.IsLegacyGroup(g.Name()) && !legacy {
			continue
		}
		names = append(names, g.Name())
	}
	return strings.Join(names, ",")
}
