package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			io.WriteString(w, "ready\n")
		case "/slow":
			time.Sleep(time.Second)
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer ready.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there any more

	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // "" for success
	}{
		{"ready", []string{ready.URL + "/readyz"}, ""},
		{"not ready", []string{ready.URL + "/other"}, "503"},
		{"nothing listens", []string{closed.URL + "/readyz"}, "connection refused"},
		{"too slow", []string{"--timeout", "100ms", ready.URL + "/slow"}, "deadline exceeded"},
		{"not a URL", []string{"127.0.0.1:8080/readyz"}, "not an http"},
		{"two URLs", []string{ready.URL, ready.URL}, "at most one URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			err := run(context.Background(), tc.args, &stdout, &stderr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("run(%q) = %v, want success", tc.args, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
		})
	}
}
