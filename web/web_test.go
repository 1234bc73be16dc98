package web_test

import (
	"bytes"
	"encoding/binary"
	"image/png"
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

// TestFavicon checks the page's icons (issue 15, item 13c): the SVG the
// page links to, and /favicon.ico for what asks for it without reading the
// page: 16, 32 and 48 pixel PNG images in an ICO, transparent in the
// corners, served under the page's policy. (TestBrowserFavicon loads both
// in Chromium.)
func TestFavicon(t *testing.T) {
	_, index := get(t, "/")
	if !strings.Contains(index, `<link rel="icon" href="favicon.svg" type="image/svg+xml">`) {
		t.Errorf("index.html does not link to favicon.svg")
	}
	res, svg := get(t, "/favicon.svg")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(svg, "<svg ") {
		t.Errorf("GET /favicon.svg: %d %q, %.20q, want 200 image/svg+xml, an SVG", res.StatusCode, res.Header.Get("Content-Type"), svg)
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "href=") {
		t.Errorf("favicon.svg has a script or a link")
	}
	res, ico := get(t, "/favicon.ico")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "image/x-icon" {
		t.Fatalf("GET /favicon.ico: %d %q, want 200 image/x-icon", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if got := res.Header.Get("Content-Security-Policy"); got != web.ContentSecurityPolicy {
		t.Errorf("Content-Security-Policy %q, want %q", got, web.ContentSecurityPolicy)
	}
	b := []byte(ico)
	le := binary.LittleEndian
	if len(b) < 6 || le.Uint16(b[0:]) != 0 || le.Uint16(b[2:]) != 1 {
		t.Fatalf("favicon.ico: no ICO header")
	}
	n := int(le.Uint16(b[4:]))
	var sizes []int
	for i := range n {
		e := b[6+16*i:]
		size, length, offset := int(e[0]), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
		if offset+length > len(b) {
			t.Fatalf("favicon.ico: image %d past the end", i)
		}
		img, err := png.Decode(bytes.NewReader(b[offset : offset+length]))
		if err != nil {
			t.Fatalf("favicon.ico: image %d: %v", i, err)
		}
		if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w != size || h != size {
			t.Errorf("favicon.ico: image %d is %dx%d, its entry says %d", i, w, h, size)
		}
		if _, _, _, a := img.At(0, 0).RGBA(); a > 0x4000 { // rounded: at most a little antialiasing
			t.Errorf("favicon.ico: %d px image: corner not transparent (alpha %#x)", size, a)
		}
		if _, _, _, a := img.At(size/2, size/8).RGBA(); a != 0xffff {
			t.Errorf("favicon.ico: %d px image: not opaque inside", size)
		}
		sizes = append(sizes, size)
	}
	if !slices.Equal(sizes, []int{16, 32, 48}) {
		t.Errorf("favicon.ico: sizes %v, want [16 32 48]", sizes)
	}
}
