// Package buildinfo says which build a program is, for the --version of
// keyrelay's commands.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Line is Describe for the running binary.
func Line(name string) string {
	bi, ok := debug.ReadBuildInfo()
	return Describe(name, bi, ok)
}

// Describe describes the build: the module's version, its VCS
// revision and date (unless the version is a pseudo-version, which has
// them) and the Go version, such as "keyrelay-chat (devel) rev
// 5591c32b1e0a 2026-12-03, go1.26.8"; whatever bi lacks is left out.
func Describe(name string, bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return name + " (no build information), " + runtime.Version()
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	line := name + " " + v
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	rev = rev[:min(len(rev), 12)] // 12 hex digits, as Go's pseudo-versions have
	if rev != "" && strings.Contains(v, rev) {
		// A pseudo-version (v0.0.0-20261203101112-5591c32b1e0a) has the
		// revision and its time already.
		return line + ", " + bi.GoVersion
	}
	if rev != "" {
		line += " rev " + rev
		if dirty {
			line += "+dirty"
		}
	}
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		line += " " + t.UTC().Format(time.DateOnly)
	}
	return line + ", " + bi.GoVersion
}
