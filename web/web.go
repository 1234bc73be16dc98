// Package web holds keyrelay's browser client: the chat page (index.html,
// app.js, style.css) and the JavaScript client library, embedded in the
// binary and served by [Handler], with their tests. The library is a set of
// ES modules that import one another by relative path, so the page loads
// them from its own origin with no build step:
//
//   - keyrelay.js: the protocol client (Client), like Go's relay/client; it
//     re-exports the others' API, so pages and apps import it alone;
//   - wire.js: the protocol's vocabulary, like Go's package wire, checked
//     against wire/codes.json by test/wire.test.mjs;
//   - dh.js: the cryptography, like Go's package dh (groups, key
//     validation, key derivation, sealing, safety numbers), with modp.js
//     (the RFC 3526 groups in BigInt arithmetic) and bytes.js (the error
//     type and byte encodings).
//
// Everything cryptographic happens in the browser: the page generates its key
// pair there, sends the relay only its public key and ciphertext, and shows
// the safety number that the two people compare out of band. The room ID
// and its group travel in the share link's fragment
// (/#room=<id>&group=x25519), which browsers never send to the server, so
// they never reach access logs; the joining page refuses a room whose group
// is not the link's, and shows the group it insists on.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

// files are the page's files. Each is listed by name, so that a build
// without one fails instead of serving a page that cannot load.
//
//go:embed index.html app.js style.css keyrelay.js wire.js dh.js modp.js bytes.js favicon.svg favicon.ico
var files embed.FS

// ContentSecurityPolicy is the Content-Security-Policy header of every
// response of Handler: scripts, styles and fetches from the page's own origin
// only (no inline script or style, no eval), WebSockets to the relay, no
// plugins, no framing, no form posts elsewhere.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// file is one served file.
type file struct {
	name        string // in files
	contentType string
	body        []byte
	etag        string
}

// served maps each URL path to its file; any other path is 404.
var served = map[string]file{
	"/":            {name: "index.html", contentType: "text/html; charset=utf-8"},
	"/index.html":  {name: "index.html", contentType: "text/html; charset=utf-8"},
	"/app.js":      {name: "app.js", contentType: "text/javascript; charset=utf-8"},
	"/keyrelay.js": {name: "keyrelay.js", contentType: "text/javascript; charset=utf-8"},
	"/wire.js":     {name: "wire.js", contentType: "text/javascript; charset=utf-8"},
	"/dh.js":       {name: "dh.js", contentType: "text/javascript; charset=utf-8"},
	"/modp.js":     {name: "modp.js", contentType: "text/javascript; charset=utf-8"},
	"/bytes.js":    {name: "bytes.js", contentType: "text/javascript; charset=utf-8"},
	"/style.css":   {name: "style.css", contentType: "text/css; charset=utf-8"},
	// The page's icon (<link rel="icon">), and the same drawn at 16, 32
	// and 48 pixels for what asks for /favicon.ico without reading the
	// page (bookmarks, older browsers); made from the SVG by
	// TestBrowserFavicon -update-favicon.
	"/favicon.svg": {name: "favicon.svg", contentType: "image/svg+xml"},
	"/favicon.ico": {name: "favicon.ico", contentType: "image/x-icon"},
}

func init() {
	for path, f := range served {
		b, err := files.ReadFile(f.name)
		if err != nil {
			panic("web: embedded file missing: " + f.name) // a build error, in effect
		}
		sum := sha256.Sum256(b)
		f.body = b
		f.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
		served[path] = f
	}
}

// Handler returns the handler of the chat page: GET and HEAD of /,
// /index.html, /app.js, /style.css, the icon (/favicon.svg, /favicon.ico)
// and the library's modules /keyrelay.js, /wire.js, /dh.js, /modp.js and
// /bytes.js. Any other path gets 404, any other method 405. Mount it at
// "/" of a mux whose more specific patterns (/v1/ws, /metrics, …) keep
// their own handlers.
//
// Every response carries [ContentSecurityPolicy], Referrer-Policy:
// no-referrer, X-Content-Type-Options: nosniff, X-Frame-Options: DENY and
// Cross-Origin-Opener-Policy: same-origin. Files are revalidated on every use
// (Cache-Control: no-cache, with an ETag), so a new build is picked up at once.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	f, ok := served[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
