package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// certificate is the server's TLS certificate and key, read from two PEM
// files and re-read on demand (on SIGHUP) without a restart. Connections
// take the current pair through GetCertificate, so a reload affects new
// handshakes only; established connections keep theirs.
type certificate struct {
	// Static after loadCertificate.
	certFile, keyFile string

	cur atomic.Pointer[tls.Certificate] // never nil after loadCertificate
}

// loadCertificate reads the certificate chain and private key. It returns
// an error if either file cannot be read or parsed, or if the key is not
// the certificate's.
func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload re-reads both files and, if they hold a valid pair, serves it to
// new connections. On error the current pair stays in use. The error names
// the files and never carries their contents.
func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load %s and %s: %w", c.certFile, c.keyFile, err)
	}
	if pair.Leaf == nil { // filled in by LoadX509KeyPair since Go 1.23
		return errors.New("load " + c.certFile + ": no leaf certificate")
	}
	c.cur.Store(&pair)
	return nil
}

// getCertificate is tls.Config.GetCertificate: the current pair, whatever
// the client asked for.
func (c *certificate) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// tlsConfig returns the server's TLS configuration: TLS 1.2 or newer, the
// certificate from getCertificate, Go's default cipher suites (all with
// forward secrecy and AEAD for TLS 1.2).
func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.getCertificate,
	}
}

// logAttrs describes the current certificate for logs: public facts only,
// never key material.
func (c *certificate) logAttrs() []any {
	leaf := c.cur.Load().Leaf
	attrs := []any{
		"serial", leaf.SerialNumber.String(),
		"subject", leaf.Subject.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
	}
	if time.Now().After(leaf.NotAfter) {
		attrs = append(attrs, "expired", true)
	}
	return attrs
}
