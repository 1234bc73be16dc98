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
package keyapi

import (
	"bytes"
	"context"
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

	"github.com/keyrelay/keyrelay/dh"
)

// Config configures the key API. The zero value is ready to use.
type Config struct {
	// AllowedOrigins lists the origins allowed by CORS, as exact
	// "scheme://host[:port]" strings or "*" for any origin. Nil means
	// ["*"], as the tutorial's flask_cors did; an empty non-nil slice
	// sends no CORS headers.
	AllowedOrigins []string
	// DisableGETSharedKey rejects GET /generate-shared-key (405), leaving
	// only POST, so that private keys cannot arrive in URLs. False by
	// default, for the tutorial's clients.
	DisableGETSharedKey bool
	// MaxBodyBytes bounds a POST body. Zero means 64 KiB.
	MaxBodyBytes int64
	// MaxConcurrent bounds how many key operations run at once; requests
	// beyond it wait for a slot until their context ends (503). Zero means
	// 16.
	MaxConcurrent int
	// DefaultGroup is used when a request names no group. Nil means
	// dh.MODP14(), the tutorial's default.
	DefaultGroup *dh.Group
}

// Handler serves the key API. Create it with New.
type Handler struct {
	// Static after construction.
	cfg    Config
	logger *slog.Logger
	slots  chan struct{}
	mux    *http.ServeMux
}

// New returns a Handler for cfg. It returns an error for a negative limit or
// a malformed origin. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Handler, error) {
	if cfg.AllowedOrigins == nil {
		cfg.AllowedOrigins = []string{"*"}
	}
	for _, o := range cfg.AllowedOrigins {
		if o != "*" && !strings.Contains(o, "://") {
			return nil, fmt.Errorf("keyapi: allowed origin %q is neither \"*\" nor scheme://host", o)
		}
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxConcurrent < 0 {
		return nil, errors.New("keyapi: limits must not be negative")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 16
	}
	if cfg.DefaultGroup == nil {
		cfg.DefaultGroup = dh.MODP14()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, logger: logger, slots: make(chan struct{}, cfg.MaxConcurrent), mux: http.NewServeMux()}
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
// preflights and plain ones), reporting whether it did.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	allowed := ""
	switch {
	case origin == "" || len(h.cfg.AllowedOrigins) == 0:
	case slices.Contains(h.cfg.AllowedOrigins, "*"):
		allowed = "*"
	case slices.Contains(h.cfg.AllowedOrigins, origin):
		allowed = origin
		w.Header().Add("Vary", "Origin")
	}
	if allowed != "" {
		w.Header().Set("Access-Control-Allow-Origin", allowed)
	}
	if r.Method != http.MethodOptions {
		return false
	}
	// OPTIONS is answered here, preflight or not, as Flask answers it.
	if allowed != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
	}
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
	status int
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

func fail(status int, format string, args ...any) error {
	return &badRequest{status: status, msg: fmt.Sprintf(format, args...)}
}

func (h *Handler) generateKeys(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	g, err := h.group(r.URL.Query().Get("group"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.acquire(r.Context()); err != nil {
		h.writeError(w, r, err)
		return
	}
	k, err := g.GenerateKey(rand.Reader)
	h.release()
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
	local, err := g.ParsePrivateKey(priv)
	if err != nil {
		h.writeError(w, r, keyError("local_private_key", err))
		return
	}
	remote, err := g.ParsePublicKey(pub)
	if err != nil {
		h.writeError(w, r, keyError("remote_public_key", err))
		return
	}
	if err := h.acquire(r.Context()); err != nil {
		h.writeError(w, r, err)
		return
	}
	z, err := local.SharedSecret(remote)
	h.release()
	if err != nil {
		h.writeError(w, r, keyError("remote_public_key", err))
		return
	}
	writeJSON(w, http.StatusOK, sharedKeyResponse{SharedKey: dh.SeedKey(z)})
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

func (h *Handler) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fail(http.StatusServiceUnavailable, "Server busy, try again")
	}
}

func (h *Handler) release() { <-h.slots }

// writeError writes err as {"message": …}. Errors that are not a badRequest
// are internal: the client gets a generic message, the log the details
// (never a key: no dh error carries one, and the query is not logged).
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var br *badRequest
	if errors.As(err, &br) {
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
