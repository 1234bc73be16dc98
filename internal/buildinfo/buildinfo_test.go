package buildinfo_test

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/internal/buildinfo"
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"from a clone", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "5591c32b1e0a4f1d9c3a7e2b8d6f0a1c2e3b4d5f"},
			{Key: "vcs.time", Value: "2026-12-03T10:11:12Z"},
			{Key: "vcs.modified", Value: "false"},
		}}, true, "prog (devel) rev 5591c32b1e0a 2026-12-03, go1.26.8"},
		{"modified", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "5591c32b1e0a4f1d9c3a7e2b8d6f0a1c2e3b4d5f"},
			{Key: "vcs.modified", Value: "true"},
		}}, true, "prog (devel) rev 5591c32b1e0a+dirty, go1.26.8"},
		{"pseudo-version", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261203101112-5591c32b1e0a+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "5591c32b1e0a4f1d9c3a7e2b8d6f0a1c2e3b4d5f"},
			{Key: "vcs.time", Value: "2026-12-03T10:11:12Z"},
			{Key: "vcs.modified", Value: "true"},
		}}, true, "prog v0.0.0-20261203101112-5591c32b1e0a+dirty, go1.26.8"},
		{"go install of a release", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}, true, "prog v1.2.3, go1.26.8"},
		{"no version", &debug.BuildInfo{GoVersion: "go1.26.8"}, true, "prog (devel), go1.26.8"},
	}
	for _, tt := range tests {
		if got := buildinfo.Describe("prog", tt.bi, tt.ok); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := buildinfo.Describe("prog", nil, false); !strings.HasPrefix(got, "prog (no build information), go") {
		t.Errorf("without build information: %q", got)
	}
}
