// Package auth verifies the connection tokens that an app's backend issues
// to its users: JSON Web Tokens (RFC 7519), signed with an HMAC secret
// the backend and the relay share, or with a private key whose public key
// the relay holds (RS256, ES256, EdDSA). A token says who the user is
// (sub) and until when it holds (exp, required); the relay can require
// its audience (aud) and issuer (iss).
//
// Verification never trusts the token's own choice of algorithm beyond an
// allow-list: "none" is never accepted, and a key is used only with the
// algorithms of its kind, so that an HMAC secret can never be taken for a
// public key or the other way round (the classic confusion attack). The
// parsing is golang-jwt/jwt/v5's.
//
// This package is the first part of issue 17 (only an app's own users
// admitted): the relay does not use it yet.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify. Every error it returns wraps ErrInvalidToken;
// ErrTokenExpired also marks an expired token, which a client can replace
// by fetching a new one.
var (
	ErrInvalidToken = errors.New("auth: invalid token")
	ErrTokenExpired = errors.New("auth: token expired")
)

// MinSecretBytes is the shortest HMAC secret New accepts: 256 bits, as
// RFC 7518 §3.2 requires for HS256.
const MinSecretBytes = 32

// Config configures a Verifier. At least one of Secret and PublicKeys is
// required.
type Config struct {
	// Secret is the HMAC secret shared with the app's backend (HS256,
	// HS384, HS512), at least MinSecretBytes long.
	Secret []byte
	// PreviousSecret, for a rotation, is also accepted until
	// PreviousUntil; after that only Secret is.
	PreviousSecret []byte
	PreviousUntil  time.Time
	// PublicKeys verify tokens signed with the matching private keys:
	// *rsa.PublicKey (RS256, RS384, RS512, PS256), *ecdsa.PublicKey
	// (ES256, ES384, ES512) or ed25519.PublicKey (EdDSA). See
	// ParsePublicKeys.
	PublicKeys []crypto.PublicKey
	// Algorithms is the allow-list of the tokens' alg. Nil means every
	// algorithm of the keys given: HS256 for a secret, RS256, ES256 or
	// EdDSA for a public key of that kind. "none" is refused.
	Algorithms []string
	// Audience and Issuer, if set, must be the token's aud (one of them)
	// and iss.
	Audience string
	Issuer   string
	// Leeway is the clock skew allowed on exp and nbf. Zero means none.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// Claims is what a valid token says.
type Claims struct {
	// Subject is the user (sub), never empty.
	Subject string
	// Expires is when the token stops holding (exp).
	Expires time.Time
}

// Verifier checks tokens against a Config. Its methods may be called
// concurrently.
type Verifier struct {
	cfg     Config
	parser  *jwt.Parser
	methods []string
}

// families maps each algorithm the package supports to the kind of key
// that verifies it.
var families = map[string]string{
	"HS256": "hmac", "HS384": "hmac", "HS512": "hmac",
	"RS256": "rsa", "RS384": "rsa", "RS512": "rsa", "PS256": "rsa",
	"ES256": "ecdsa", "ES384": "ecdsa", "ES512": "ecdsa",
	"EdDSA": "ed25519",
}

// kind returns the family of key k, or "".
func kind(k crypto.PublicKey) string {
	switch k.(type) {
	case *rsa.PublicKey:
		return "rsa"
	case *ecdsa.PublicKey:
		return "ecdsa"
	case ed25519.PublicKey:
		return "ed25519"
	}
	return ""
}

// New returns a Verifier for cfg, or an error if cfg has no key, a secret
// shorter than MinSecretBytes, a public key of an unsupported kind, or an
// algorithm that is unknown, "none", or has no key of its kind.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 && len(cfg.PublicKeys) == 0 {
		return nil, errors.New("auth: a secret or a public key is required")
	}
	for _, s := range [][]byte{cfg.Secret, cfg.PreviousSecret} {
		if len(s) > 0 && len(s) < MinSecretBytes {
			return nil, fmt.Errorf("auth: an HMAC secret must be at least %d bytes, got %d", MinSecretBytes, len(s))
		}
	}
	have := map[string]bool{}
	if len(cfg.Secret) > 0 {
		have["hmac"] = true
	}
	for _, k := range cfg.PublicKeys {
		f := kind(k)
		if f == "" {
			return nil, fmt.Errorf("auth: unsupported public key type %T", k)
		}
		have[f] = true
	}
	methods := cfg.Algorithms
	if methods == nil {
		defaults := map[string]string{"hmac": "HS256", "rsa": "RS256", "ecdsa": "ES256", "ed25519": "EdDSA"}
		for _, f := range []string{"hmac", "rsa", "ecdsa", "ed25519"} {
			if have[f] {
				methods = append(methods, defaults[f])
			}
		}
	}
	for _, m := range methods {
		f, ok := families[m]
		switch {
		case strings.EqualFold(m, "none"):
			return nil, errors.New(`auth: the algorithm "none" is never accepted`)
		case !ok:
			return nil, fmt.Errorf("auth: unknown algorithm %q", m)
		case !have[f]:
			return nil, fmt.Errorf("auth: algorithm %s has no key of its kind (%s)", m, f)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	return &Verifier{cfg: cfg, parser: jwt.NewParser(opts...), methods: slices.Clone(methods)}, nil
}

// Algorithms returns the algorithms v accepts.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.methods) }

// keys returns the keys that may verify token t: only those of its
// algorithm's kind.
func (v *Verifier) keys(t *jwt.Token) (any, error) {
	alg, _ := t.Header["alg"].(string)
	f, ok := families[alg]
	if !ok || !slices.Contains(v.methods, alg) {
		return nil, fmt.Errorf("algorithm %q not allowed", alg)
	}
	var set jwt.VerificationKeySet
	if f == "hmac" {
		set.Keys = append(set.Keys, v.cfg.Secret)
		if len(v.cfg.PreviousSecret) > 0 && v.cfg.Now().Before(v.cfg.PreviousUntil) {
			set.Keys = append(set.Keys, v.cfg.PreviousSecret)
		}
	} else {
		for _, k := range v.cfg.PublicKeys {
			if kind(k) == f {
				set.Keys = append(set.Keys, k)
			}
		}
	}
	return set, nil
}

// Verify checks token's signature, algorithm, expiry (required), not
// before, audience and issuer, and returns its claims. Every error wraps
// ErrInvalidToken, and ErrTokenExpired too for a token past its exp.
// The error never repeats the token.
func (v *Verifier) Verify(token string) (Claims, error) {
	var rc jwt.RegisteredClaims
	_, err := v.parser.ParseWithClaims(token, &rc, v.keys)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenExpired)
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	case rc.Subject == "":
		return Claims{}, fmt.Errorf("%w: no sub (the user)", ErrInvalidToken)
	}
	return Claims{Subject: rc.Subject, Expires: rc.ExpiresAt.Time}, nil
}

// ParsePublicKeys returns the public keys of the PEM blocks in data:
// "PUBLIC KEY" (PKIX: RSA, ECDSA or Ed25519) or "RSA PUBLIC KEY"
// (PKCS #1). It returns an error for a block of another type, a key that
// does not parse, or no key at all.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		var k any
		var err error
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		default:
			return nil, fmt.Errorf("auth: PEM block %q is not a public key", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("auth: public key %d: %w", len(keys)+1, err)
		}
		if kind(k) == "" {
			return nil, fmt.Errorf("auth: unsupported public key type %T", k)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("auth: no PEM public key found")
	}
	return keys, nil
}
