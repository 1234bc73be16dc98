package keyapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/keyapi"
)

// FuzzKeyAPI sends arbitrary requests (method, path and query, content
// type, body) to the key API: it never answers 500 or panics, and every
// answer of its own is a JSON object.
func FuzzKeyAPI(f *testing.F) {
	h, err := keyapi.New(keyapi.Config{MaxBodyBytes: 4096}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []struct{ method, target, ctype, body string }{
		{"GET", "/generate-keys", "", ""},
		{"GET", "/generate-keys?group=x25519", "", ""},
		{"GET", "/generate-shared-key?local_private_key=1&remote_public_key=2&group=14", "", ""},
		{"POST", "/generate-shared-key", "application/json", `{"local_private_key":"01","remote_public_key":"02","group":"p256"}`},
		{"POST", "/generate-shared-key", "application/json; charset=utf-8", `{"group":14}`},
		{"POST", "/generate-shared-key", "text/plain", `x`},
		{"OPTIONS", "/generate-keys", "", ""},
	} {
		f.Add(s.method, s.target, s.ctype, []byte(s.body))
	}
	methods := []string{"GET", "POST", "OPTIONS", "PUT", "DELETE", "HEAD"}
	f.Fuzz(func(t *testing.T, method, target, ctype string, body []byte) {
		m := methods[len(method)%len(methods)]
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		r, err := http.NewRequest(m, "http://relay.test"+target, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client could send
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", m, target, w.Code, w.Body)
		}
		// 204 and HEAD have no body; 404 and the redirects of unclean paths
		// ("/." to "/", found by fuzzing) are net/http's ServeMux's.
		if w.Code == http.StatusNoContent || w.Code == http.StatusNotFound || w.Code/100 == 3 || m == "HEAD" {
			return
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s %q: %d with a body that is not a JSON object: %q", m, target, w.Code, w.Body)
		}
	})
}
