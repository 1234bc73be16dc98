package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/keyrelay/keyrelay/auth"
)

var (
	secret   = []byte("0123456789abcdef0123456789abcdef")
	previous = []byte("previous-secret-previous-secret!")
	now      = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

// sign returns a token of claims signed with method and key.
func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// valid returns the claims of a token valid at now.
func valid() jwt.MapClaims {
	return jwt.MapClaims{"sub": "user-1", "exp": now.Add(time.Minute).Unix(), "aud": "chat", "iss": "backend"}
}

// with returns valid's claims changed by f.
func with(f func(jwt.MapClaims)) jwt.MapClaims {
	c := valid()
	f(c)
	return c
}

func TestVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.New(auth.Config{
		Secret: secret, PreviousSecret: previous, PreviousUntil: now.Add(time.Hour),
		PublicKeys: []crypto.PublicKey{&rsaKey.PublicKey, &ecKey.PublicKey, edPub},
		Audience:   "chat", Issuer: "backend", Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.Algorithms(), " "); got != "HS256 RS256 ES256 EdDSA" {
		t.Errorf("Algorithms = %q", got)
	}
	// An RSA public key in PKIX DER, used as an HMAC secret: the
	// confusion attack.
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	unsigned := func(alg string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"user-1","exp":`+
			strconv.FormatInt(now.Add(time.Minute).Unix(), 10)+`,"aud":"chat","iss":"backend"}`)) + "."
	}

	for _, tc := range []struct {
		name    string
		token   string
		expired bool
		ok      bool
	}{
		{"HS256", sign(t, jwt.SigningMethodHS256, secret, valid()), false, true},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, valid()), false, true},
		{"ES256", sign(t, jwt.SigningMethodES256, ecKey, valid()), false, true},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, edKey, valid()), false, true},
		{"previous secret before its end", sign(t, jwt.SigningMethodHS256, previous, valid()), false, true},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })), true, false},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, with(func(c jwt.MapClaims) { delete(c, "exp") })), false, false},
		{"no sub", sign(t, jwt.SigningMethodHS256, secret, with(func(c jwt.MapClaims) { delete(c, "sub") })), false, false},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), false, false},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, secret, with(func(c jwt.MapClaims) { c["aud"] = "other" })), false, false},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, secret, with(func(c jwt.MapClaims) { c["iss"] = "else" })), false, false},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-!!"), valid()), false, false},
		{"unknown RSA key", sign(t, jwt.SigningMethodRS256, otherRSA, valid()), false, false},
		{"alg none", unsigned("none"), false, false},
		{"public key as HMAC secret", sign(t, jwt.SigningMethodHS256, pemKey, valid()), false, false},
		{"public key DER as HMAC secret", sign(t, jwt.SigningMethodHS256, der, valid()), false, false},
		{"algorithm not allowed (HS512)", sign(t, jwt.SigningMethodHS512, secret, valid()), false, false},
		{"tampered", sign(t, jwt.SigningMethodHS256, secret, valid()) + "x", false, false},
		{"not a JWT", "hello", false, false},
		{"empty", "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(tc.token)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.ok:
				if c.Subject != "user-1" || !c.Expires.Equal(now.Add(time.Minute)) {
					t.Errorf("claims = %+v", c)
				}
			case err == nil:
				t.Fatalf("Verify accepted it: %+v", c)
			case !errors.Is(err, auth.ErrInvalidToken):
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			case errors.Is(err, auth.ErrTokenExpired) != tc.expired:
				t.Errorf("error %v: ErrTokenExpired = %v, want %v", err, !tc.expired, tc.expired)
			}
			if err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error repeats the token: %v", err)
			}
		})
	}
}

// TestPreviousSecretEnds checks the rotation: the previous secret is
// refused after PreviousUntil.
func TestPreviousSecretEnds(t *testing.T) {
	v, err := auth.New(auth.Config{Secret: secret, PreviousSecret: previous, PreviousUntil: now.Add(-time.Second),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, previous, valid())
	if _, err := v.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token of the previous secret after its end: %v, want ErrInvalidToken", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, valid())); err != nil {
		t.Errorf("a token of the current secret: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		cfg  auth.Config
	}{
		{"no key", auth.Config{}},
		{"short secret", auth.Config{Secret: []byte("short")}},
		{"short previous secret", auth.Config{Secret: secret, PreviousSecret: []byte("short")}},
		{"alg none", auth.Config{Secret: secret, Algorithms: []string{"none"}}},
		{"alg NONE", auth.Config{Secret: secret, Algorithms: []string{"NONE"}}},
		{"unknown alg", auth.Config{Secret: secret, Algorithms: []string{"XS256"}}},
		{"RS256 without an RSA key", auth.Config{Secret: secret, Algorithms: []string{"RS256"}}},
		{"HS256 without a secret", auth.Config{PublicKeys: []crypto.PublicKey{edPub}, Algorithms: []string{"HS256"}}},
		{"unsupported key type", auth.Config{PublicKeys: []crypto.PublicKey{"a string"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.New(tc.cfg); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestParsePublicKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	var all []byte
	for _, k := range []any{&rsaKey.PublicKey, &ecKey.PublicKey, edPub} {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	all = append(all, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})...)
	keys, err := auth.ParsePublicKeys(all)
	if err != nil || len(keys) != 4 {
		t.Fatalf("ParsePublicKeys = %d keys, %v; want 4", len(keys), err)
	}
	priv, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"nothing", nil},
		{"not PEM", []byte("hello")},
		{"a private key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})},
		{"garbage in a block", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.ParsePublicKeys(tc.data); err == nil {
				t.Fatal("ParsePublicKeys succeeded, want an error")
			}
		})
	}
}

// FuzzVerify feeds Verify arbitrary tokens: it must never panic, and
// never accept one that was not signed with the secret.
func FuzzVerify(f *testing.F) {
	v, err := auth.New(auth.Config{Secret: secret, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	good, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "exp": now.Add(time.Minute).Unix()}).SignedString(secret)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", good[:len(good)-2], strings.Repeat(".", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err == nil && token != good {
			// Another encoding of the same signed content would have to
			// carry a valid HMAC: only the seed itself may pass.
			if _, perr := jwt.Parse(token, func(*jwt.Token) (any, error) { return secret, nil }, jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now })); perr != nil {
				t.Fatalf("Verify accepted %q (%+v), which does not verify", token, c)
			}
		}
	})
}
