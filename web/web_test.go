package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/web"
)

// get fetches p from Handler and returns the response and its body.
func get(t *testing.T, p string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// relativeImport matches the module specifiers of static imports and
// re-exports: `from "./x.js"`.
var relativeImport = regexp.MustCompile(`\bfrom\s+"(\./[^"]+)"`)

// TestModulesServed checks that every JavaScript module in this directory
// is served as JavaScript under the page's policy, and that every module a
// served script imports is served too: a module missing from the embed list
// or from the file table would leave the page unable to load.
func TestModulesServed(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var modules []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".js") {
			modules = append(modules, "/"+e.Name())
		}
	}
	for _, want := range []string{"/app.js", "/keyrelay.js", "/wire.js", "/dh.js"} {
		if !slices.Contains(modules, want) {
			t.Errorf("%s is not in web/", want)
		}
	}
	seen := map[string]bool{}
	for len(modules) > 0 {
		p := modules[0]
		modules = modules[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		res, body := get(t, p)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", p, res.StatusCode)
			continue
		}
		if got, want := res.Header.Get("Content-Type"), "text/javascript; charset=utf-8"; got != want {
			t.Errorf("GET %s: Content-Type %q, want %q", p, got, want)
		}
		if got := res.Header.Get("Content-Security-Policy"); got != web.ContentSecurityPolicy {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", p, got, web.ContentSecurityPolicy)
		}
		for _, m := range relativeImport.FindAllStringSubmatch(body, -1) {
			modules = append(modules, path.Join(path.Dir(p), m[1]))
		}
	}
	for _, p := range []string{"/wire.js", "/dh.js", "/modp.js", "/bytes.js"} {
		if !seen[p] {
			t.Errorf("%s is not imported by the page's scripts", p)
		}
	}
}
