// Package keyapi serves the HTTP key API of the tutorial keyrelay grew from,
// byte for byte compatible with its Python/Flask server:
//
//	GET  /generate-keys[?group=G]
//	     200 {"private_key":"<hex>","public_key":"<hex>"}
//	GET  /generate-shared-key?local_private_key=X&remote_public_key=Y[&group=G]
//	POST /generate-shared-key  {"local_private_key":X,"remote_public_key":Y[,"group":G]}
//	     200 {"shared_key":"<hex>"}
//	     400 {"message":"Invalid public key"}
//
// Keys are lowercase hex without a prefix; the group defaults to 14 (2048-bit
// MODP) and may be given as a number (5, 14-18) or a name (modp14, x25519,
// p256). The shared key is the tutorial's derivation, [dh.SeedKey]. Every
// other bad input gets a 400 (413 for an oversized body) with a
// {"message": …} that says what is wrong.
//
// The server generates or receives private keys here, which end-to-end
// encryption should never allow: the API exists for tutorial-compatible
// clients only. POST keeps the private key out of URLs, and so out of access
// logs, proxies and browser history; the handler never logs a query string.
//
// # Admission
//
// A key operation's CPU time depends on its group and, for a shared key,
// on the length of the private exponent the client sends: from well under
// a millisecond (x25519) to about 1.3 s (modp18 with an exponent as long as
// q, two 8192-bit exponentiations). Before computing anything the
// handler estimates the request's cost from the group and the exponent's
// length (admission.go states the model and its figures), then:
//
//   - charges it to the client's token bucket, in CPU time: by default a
//     client IP (an IPv6 /64) may spend 3 s at once (two of the heaviest
//     requests) and 250 ms per second after that, a quarter of a core. Over
//     it, the client gets 429 Too Many Requests with Retry-After (seconds
//     until it could afford the request) and {"message": "Too many
//     requests: …"}. Requests refused before (bad input) or by the limit
//     itself are not charged, but until the client could afford what it
//     was refused for, its requests are refused before their body is
//     read, so that one ignoring Retry-After costs little.
//   - takes one of 4 slots and its cost of a 1.6 s budget of work in
//     flight, so that the heaviest request (about 1.3 s) runs beside light
//     ones but never beside another as heavy. A request waits up to 2 s for
//     room, behind at most 32 others, then gets 503 Service Unavailable
//     with Retry-After and {"message": "Server busy, …"}. A light request
//     is never held up by a heavy one waiting ahead of it.
//
// So with the defaults at most 4 goroutines compute keys at once, holding
// at most 1.6 s of CPU work between them, 32 more wait (each holding its
// connection for at most 2 s), and one IP costs at most a quarter of a core
// over time. Every limit is a Config field.
//
// # CORS
//
// Responses carry Access-Control-Allow-Origin for the configured origins;
// by default "*", as the tutorial's flask_cors did, so that a page anywhere
// can read what GET /generate-keys returns. That is safe because the API
// uses no cookies or other credentials (a browser refuses "*" with them)
// and answers everyone alike: a page learns nothing it could not fetch
// itself. Preflighted requests (POST with Content-Type: application/json)
// are another matter: they are how a page on another site would send its
// users' private keys to this server, which end-to-end encryption never
// should, so a preflight is answered only for an origin listed by name, "*"
// does not cover it, and by default none is (403). Same-origin pages (the
// relay's own) need no CORS at all.
package keyapi

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyrelay/keyrelay/dh"
)

// Config configures the key API. The zero value is ready to use.
type Config struct {
	// AllowedOrigins lists the origins allowed by CORS, as exact
	// "scheme://host[:port]" strings or "*" for any origin. Nil means
	// ["*"], as the tutorial's flask_cors did; an empty non-nil slice
	// sends no CORS headers. "*" covers simple requests only (GET, and
	// POST without a JSON Content-Type): a preflight is answered only for
	// an origin listed by name (see the package documentation).
	AllowedOrigins []string
	// DisableGETSharedKey rejects GET /generate-shared-key (405), leaving
	// only POST, so that private keys cannot arrive in URLs. False by
	// default, for the tutorial's clients.
	DisableGETSharedKey bool
	// MaxBodyBytes bounds a POST body. Zero means 64 KiB.
	MaxBodyBytes int64
	// MaxConcurrent bounds how many key operations compute at once (the
	// slots). Zero means 4.
	MaxConcurrent int
	// MaxWork bounds the estimated CPU time of the key operations
	// computing at once; a request costlier than MaxWork runs alone.
	// Zero means 1.6 s: the heaviest request (about 1.3 s) runs beside
	// light ones but not beside another as heavy.
	MaxWork time.Duration
	// SlotWait is how long a request waits for a slot before it gets 503.
	// Zero means 2 s. Waiting ends sooner if the client goes away.
	SlotWait time.Duration
	// MaxWaiting bounds the requests waiting for a slot; beyond it a
	// request gets 503 at once. Zero means 32; negative means none wait.
	MaxWaiting int
	// RatePerIP is the CPU time per second one client may spend on key
	// operations once its burst is spent (a token bucket, charged with each
	// request's estimated cost). Zero means 250 ms (a quarter of a core);
	// negative means no per-client limit.
	RatePerIP time.Duration
	// BurstPerIP is the size of a client's bucket: the CPU time it may
	// spend at once. Zero means 3 s (two of the heaviest requests).
	BurstPerIP time.Duration
	// ClientIP returns the address a request is counted under: the client
	// IP, which behind a trusted proxy package realip finds. Nil, or an
	// empty answer, means the host part of the request's RemoteAddr. IPv6
	// addresses are counted by their /64.
	ClientIP func(*http.Request) string
	// DefaultGroup is used when a request names no group. Nil means
	// dh.MODP14(), the tutorial's default.
	DefaultGroup *dh.Group
}

// Handler serves the key API. Create it with New.
type Handler struct {
	// Static after construction.
	cfg    Config
	logger *slog.Logger
	slots  *slots
	rate   *rateLimiter // nil: no per-client limit
	mux    *http.ServeMux
}

// New returns a Handler for cfg. It returns an error for a negative limit
// (other than RatePerIP) or a malformed origin. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Handler, error) {
	if cfg.AllowedOrigins == nil {
		cfg.AllowedOrigins = []string{"*"}
	}
	for _, o := range cfg.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			return nil, fmt.Errorf("keyapi: allowed origin %q is neither \"*\" nor scheme://host", o)
		}
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxConcurrent < 0 || cfg.MaxWork < 0 || cfg.SlotWait < 0 || cfg.BurstPerIP < 0 {
		return nil, errors.New("keyapi: limits must not be negative (but RatePerIP and MaxWaiting)")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 4
	}
	if cfg.MaxWork == 0 {
		cfg.MaxWork = 1600 * time.Millisecond
	}
	if cfg.SlotWait == 0 {
		cfg.SlotWait = 2 * time.Second
	}
	switch {
	case cfg.MaxWaiting == 0:
		cfg.MaxWaiting = 32
	case cfg.MaxWaiting < 0:
		cfg.MaxWaiting = 0
	}
	if cfg.RatePerIP == 0 {
		cfg.RatePerIP = 250 * time.Millisecond
	}
	if cfg.BurstPerIP == 0 {
		cfg.BurstPerIP = 3 * time.Second
	}
	if cfg.DefaultGroup == nil {
		cfg.DefaultGroup = dh.MODP14()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg:    cfg,
		logger: logger,
		slots:  newSlots(cfg.MaxConcurrent, cfg.MaxWaiting, cfg.MaxWork),
		mux:    http.NewServeMux(),
	}
	if cfg.RatePerIP > 0 {
		h.rate = newRateLimiter(cfg.RatePerIP, cfg.BurstPerIP)
	}
	h.mux.HandleFunc("/generate-keys", h.generateKeys)
	h.mux.HandleFunc("/generate-shared-key", h.generateSharedKey)
	return h, nil
}

// Register adds the API's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("/generate-keys", h)
	mux.Handle("/generate-shared-key", h)
}

// ServeHTTP serves the API's two routes, with CORS.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cors(w, r) {
		return // a preflight, answered
	}
	h.mux.ServeHTTP(w, r)
}

// cors sets the CORS response headers and answers OPTIONS requests (CORS
// preflights and plain ones), reporting whether it did. A preflight is
// allowed only for an origin listed by name; "*" covers simple requests.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	allowed, named := "", false
	switch {
	case origin == "" || len(h.cfg.AllowedOrigins) == 0:
	case slices.Contains(h.cfg.AllowedOrigins, origin):
		allowed, named = origin, true
		w.Header().Add("Vary", "Origin")
	case slices.Contains(h.cfg.AllowedOrigins, "*"):
		allowed = "*"
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		if allowed != "" {
			w.Header().Set("Access-Control-Allow-Origin", allowed)
		}
		if r.Method != http.MethodOptions {
			return false
		}
		// A plain OPTIONS is answered here, as Flask answers it.
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	if !named {
		writeJSON(w, http.StatusForbidden, errorResponse{Message: "Cross-origin requests with a preflight are not allowed from this origin"})
		return true
	}
	w.Header().Set("Access-Control-Allow-Origin", allowed)
	w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// keysResponse is the body of /generate-keys. Field order matters: it is the
// tutorial's (Flask sorts keys).
type keysResponse struct {
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
}

type sharedKeyResponse struct {
	SharedKey string `json:"shared_key"`
}

type errorResponse struct {
	Message string `json:"message"`
}

// sharedKeyRequest is the POST body of /generate-shared-key. Group may be a
// JSON number or string.
type sharedKeyRequest struct {
	LocalPrivateKey *string         `json:"local_private_key"`
	RemotePublicKey *string         `json:"remote_public_key"`
	Group           json.RawMessage `json:"group"`
}

// badRequest is an error whose message the client may see.
type badRequest struct {
	status     int
	msg        string
	retryAfter int // seconds; 0: no Retry-After header
}

func (e *badRequest) Error() string { return e.msg }

func fail(status int, format string, args ...any) error {
	return &badRequest{status: status, msg: fmt.Sprintf(format, args...)}
}

func (h *Handler) generateKeys(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	if err := h.refuseEarly(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	g, err := h.group(r.URL.Query().Get("group"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	release, err := h.admit(r, generateCost(g))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	k, err := g.GenerateKey(rand.Reader)
	release()
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, keysResponse{PrivateKey: k.Hex(), PublicKey: k.PublicKey().Hex()})
}

func (h *Handler) generateSharedKey(w http.ResponseWriter, r *http.Request) {
	methods := []string{http.MethodGet, http.MethodPost}
	if h.cfg.DisableGETSharedKey {
		methods = methods[1:]
	}
	if !allowMethods(w, r, methods...) {
		return
	}
	if err := h.refuseEarly(r); err != nil {
		h.writeError(w, r, err) // the body is not read
		return
	}
	priv, pub, groupText, err := h.sharedKeyParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	g, err := h.group(groupText)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	// Parsing the private key derives its public key, an exponentiation as
	// costly as the shared secret's: both run inside the admission.
	release, err := h.admit(r, sharedCost(g, priv))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	z, err := sharedSecret(g, priv, pub)
	release()
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sharedKeyResponse{SharedKey: dh.SeedKey(z)})
}

// sharedSecret parses both keys, in the tutorial's order (its errors come
// in that order), and returns the raw shared secret.
func sharedSecret(g *dh.Group, priv, pub string) ([]byte, error) {
	local, err := g.ParsePrivateKey(priv)
	if err != nil {
		return nil, keyError("local_private_key", err)
	}
	remote, err := g.ParsePublicKey(pub)
	if err != nil {
		return nil, keyError("remote_public_key", err)
	}
	z, err := local.SharedSecret(remote)
	if err != nil {
		return nil, keyError("remote_public_key", err)
	}
	return z, nil
}

// sharedKeyParams reads the parameters from the query (GET) or the JSON body
// (POST).
func (h *Handler) sharedKeyParams(r *http.Request) (priv, pub, group string, err error) {
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		for _, name := range []string{"local_private_key", "remote_public_key"} {
			if !q.Has(name) {
				return "", "", "", fail(http.StatusBadRequest, "Missing parameter: %s", name)
			}
		}
		return q.Get("local_private_key"), q.Get("remote_public_key"), q.Get("group"), nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return "", "", "", fail(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
	}
	// The whole body is read first, so that its size limit holds whatever
	// the JSON in it.
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", "", "", fail(http.StatusRequestEntityTooLarge, "Request body larger than %d bytes", h.cfg.MaxBodyBytes)
		}
		return "", "", "", fail(http.StatusBadRequest, "Malformed JSON body: the body could not be read")
	}
	malformed := fail(http.StatusBadRequest, "Malformed JSON body: expected {\"local_private_key\": …, \"remote_public_key\": …}")
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return "", "", "", malformed
	}
	if dec.More() {
		return "", "", "", fail(http.StatusBadRequest, "Malformed JSON body: trailing data after the object")
	}
	if string(raw) != "null" {
		// Field names are matched exactly, as Python's dict lookups do
		// (encoding/json alone would accept LOCAL_PRIVATE_KEY).
		var fields map[string]json.RawMessage
		if raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
			return "", "", "", malformed
		}
		for name := range fields {
			switch name {
			case "local_private_key", "remote_public_key", "group":
			default:
				return "", "", "", fail(http.StatusBadRequest, "Malformed JSON body: unknown field %q (the fields are local_private_key, remote_public_key and group)", truncate(name))
			}
		}
	}
	var req sharedKeyRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return "", "", "", fail(http.StatusBadRequest, "Malformed JSON body: field %s must be a string", typeErr.Field)
		}
		return "", "", "", malformed
	}
	if req.LocalPrivateKey == nil {
		return "", "", "", fail(http.StatusBadRequest, "Missing parameter: local_private_key")
	}
	if req.RemotePublicKey == nil {
		return "", "", "", fail(http.StatusBadRequest, "Missing parameter: remote_public_key")
	}
	group, err = groupField(req.Group)
	return *req.LocalPrivateKey, *req.RemotePublicKey, group, err
}

// groupField accepts a JSON group given as a number (14) or a string ("14",
// "modp14"), or absent/null.
func groupField(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == "" {
			return "", fail(http.StatusBadRequest, "Unknown group: \"\"")
		}
		return s, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		return strconv.Itoa(n), nil
	}
	return "", fail(http.StatusBadRequest, "Malformed JSON body: field group must be a number or a string")
}

// group resolves a group parameter, the default when s is empty.
func (h *Handler) group(s string) (*dh.Group, error) {
	if s == "" {
		return h.cfg.DefaultGroup, nil
	}
	g, err := dh.LookupGroup(s)
	if err != nil {
		return nil, fail(http.StatusBadRequest, "Unknown group: %q (use 5, 14-18, modp5, modp14-modp18, x25519 or p256)", truncate(s))
	}
	return g, nil
}

// keyError turns a dh error about parameter name into the client's message.
// A public key that fails validation gets the tutorial's exact message.
func keyError(name string, err error) error {
	switch {
	case errors.Is(err, dh.ErrInvalidPublicKey):
		return fail(http.StatusBadRequest, "Invalid public key")
	case errors.Is(err, dh.ErrInvalidPrivateKey):
		return fail(http.StatusBadRequest, "Invalid private key: out of range for the group")
	case errors.Is(err, dh.ErrMalformedKey):
		return fail(http.StatusBadRequest, "Malformed %s: %s", name, strings.TrimPrefix(err.Error(), "dh: malformed key: "))
	}
	return err
}

// refuseEarly returns a 429 error, before the request is read, for a
// client that was refused and cannot yet afford what it was refused for.
func (h *Handler) refuseEarly(r *http.Request) error {
	if h.rate == nil {
		return nil
	}
	if wait := h.rate.early(clientKey(r, h.cfg.ClientIP)); wait > 0 {
		return tooMany(wait)
	}
	return nil
}

func tooMany(wait time.Duration) error {
	secs := retryAfter(wait)
	return &badRequest{
		status:     http.StatusTooManyRequests,
		msg:        fmt.Sprintf("Too many requests: try again in %d s", secs),
		retryAfter: secs,
	}
}

// admit charges cost to the client's rate and takes a slot for it. It
// returns the function that gives the slot back, or a 429 or 503 error.
func (h *Handler) admit(r *http.Request, cost time.Duration) (func(), error) {
	if h.rate != nil {
		if wait := h.rate.take(clientKey(r, h.cfg.ClientIP), cost); wait > 0 {
			return nil, tooMany(wait)
		}
	}
	taken, ok := h.slots.acquire(r.Context(), cost, h.cfg.SlotWait)
	if !ok {
		secs := retryAfter(h.cfg.SlotWait)
		return nil, &badRequest{
			status:     http.StatusServiceUnavailable,
			msg:        fmt.Sprintf("Server busy, try again in %d s", secs),
			retryAfter: secs,
		}
	}
	return func() { h.slots.release(taken) }, nil
}

// retryAfter is d in whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// writeError writes err as {"message": …}. Errors that are not a badRequest
// are internal: the client gets a generic message, the log the details
// (never a key: no dh error carries one, and the query is not logged).
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var br *badRequest
	if errors.As(err, &br) {
		if br.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(br.retryAfter))
		}
		writeJSON(w, br.status, errorResponse{Message: br.msg})
		return
	}
	h.logger.ErrorContext(r.Context(), "key api internal error", "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, errorResponse{Message: "Internal server error"})
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(append(methods, http.MethodOptions), ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Message: "Method not allowed; use " + strings.Join(methods, " or ")})
	return false
}

// writeJSON writes v as compact JSON with a trailing newline, as Flask's
// jsonify does.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
