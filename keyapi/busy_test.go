package keyapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBusy fills the one slot and checks that a request whose context ends
// while it waits gets a 503, not a hang.
func TestBusy(t *testing.T) {
	h, err := New(Config{MaxConcurrent: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.slots <- struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodGet, "/generate-keys", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Server busy") {
		t.Errorf("got %d %q, want 503 Server busy", rec.Code, rec.Body.String())
	}
	<-h.slots
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/generate-keys", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("after the slot is freed: %d %q", rec.Code, rec.Body.String())
	}
}
