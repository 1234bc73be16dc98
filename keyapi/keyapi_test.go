package keyapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/dh"
	"github.com/keyrelay/keyrelay/keyapi"
)

func newServer(t *testing.T, cfg keyapi.Config) *httptest.Server {
	t.Helper()
	h, err := keyapi.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// do sends a request and returns the status and the body.
func do(t *testing.T, method, u, body string, header http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

type seedVector struct {
	Group        string `json:"group"`
	AlicePrivate string `json:"alice_private"`
	AlicePublic  string `json:"alice_public"`
	BobPrivate   string `json:"bob_private"`
	BobPublic    string `json:"bob_public"`
	SharedKey    string `json:"shared_key"`
}

func seedVectors(t *testing.T) []seedVector {
	t.Helper()
	raw, err := os.ReadFile("../dh/testdata/seed_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Seed []seedVector `json:"seed"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.Seed
}

// TestSeedCompatibility checks that, for the tutorial's Python outputs
// (dh/testdata/seed_vectors.py), the API answers with the very bytes Flask's
// jsonify would send, through GET and POST, with the group given as a number,
// as a name, and (for group 14) omitted.
func TestSeedCompatibility(t *testing.T) {
	srv := newServer(t, keyapi.Config{})
	for _, tv := range seedVectors(t) {
		g, err := dh.LookupGroup(tv.Group)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"shared_key":"` + tv.SharedKey + `"}` + "\n"
		groups := []string{tv.Group, fmt.Sprint(g.ID())}
		if g.ID() == 14 {
			groups = append(groups, "")
		}
		for _, group := range groups {
			for _, side := range [][2]string{{tv.AlicePrivate, tv.BobPublic}, {tv.BobPrivate, tv.AlicePublic}} {
				q := url.Values{"local_private_key": {side[0]}, "remote_public_key": {side[1]}}
				body := map[string]any{"local_private_key": side[0], "remote_public_key": side[1]}
				if group != "" {
					q.Set("group", group)
					body["group"] = group
				}
				status, got, hdr := do(t, "GET", srv.URL+"/generate-shared-key?"+q.Encode(), "", nil)
				if status != 200 || got != want || hdr.Get("Content-Type") != "application/json" {
					t.Errorf("%s GET group=%q: %d %q, want 200 %q", tv.Group, group, status, got, want)
				}
				b, _ := json.Marshal(body)
				status, got, _ = do(t, "POST", srv.URL+"/generate-shared-key", string(b), http.Header{"Content-Type": {"application/json"}})
				if status != 200 || got != want {
					t.Errorf("%s POST group=%q: %d %q, want 200 %q", tv.Group, group, status, got, want)
				}
			}
		}
	}
	// The group as a JSON number, as a Python client would send it.
	tv := seedVectors(t)[1]
	status, got, _ := do(t, "POST", srv.URL+"/generate-shared-key",
		`{"local_private_key":"`+tv.AlicePrivate+`","remote_public_key":"`+tv.BobPublic+`","group":14}`, nil)
	if status != 200 || !strings.Contains(got, tv.SharedKey) {
		t.Errorf("numeric group: %d %s", status, got)
	}
}

// TestTutorialInteraction replays the tutorial: two key pairs from
// /generate-keys, then two shared keys that match.
func TestTutorialInteraction(t *testing.T) {
	srv := newServer(t, keyapi.Config{})
	for _, group := range []string{"", "5", "15", "x25519", "p256"} {
		var pairs [2]struct {
			PrivateKey string `json:"private_key"`
			PublicKey  string `json:"public_key"`
		}
		for i := range pairs {
			status, body, _ := do(t, "GET", srv.URL+"/generate-keys?group="+group, "", nil)
			if status != 200 {
				t.Fatalf("generate-keys: %d %s", status, body)
			}
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&pairs[i]); err != nil {
				t.Fatalf("generate-keys body %q: %v", body, err)
			}
			if !strings.HasPrefix(body, `{"private_key":"`) || !strings.HasSuffix(body, "\"}\n") {
				t.Errorf("body %q is not in the tutorial's form", body)
			}
		}
		var shared [2]string
		for i := range shared {
			q := url.Values{"local_private_key": {pairs[i].PrivateKey}, "remote_public_key": {pairs[1-i].PublicKey}, "group": {group}}
			status, body, _ := do(t, "GET", srv.URL+"/generate-shared-key?"+q.Encode(), "", nil)
			if status != 200 {
				t.Fatalf("group %q: generate-shared-key: %d %s", group, status, body)
			}
			shared[i] = body
		}
		if shared[0] != shared[1] || len(shared[0]) != len(`{"shared_key":""}`)+64+1 {
			t.Errorf("group %q: shared keys %q and %q", group, shared[0], shared[1])
		}
	}
}

// TestErrors feeds every kind of bad input and checks the status and the
// exact message the client gets.
func TestErrors(t *testing.T) {
	srv := newServer(t, keyapi.Config{MaxBodyBytes: 1024})
	tv := seedVectors(t)[1] // modp14
	p, _ := new(big.Int).SetString("ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a08798e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b0bff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece45b3dc2007cb8a163bf0598da48361c55d39a69163fa8fd24cf5f83655d23dca3ad961c62f356208552bb9ed529077096966d670c354e4abc9804f1746c08ca18217c32905e462e36ce3be39e772c180e86039b2783a2ec07a28fb5c55df06f4c52c9de2bcbf6955817183995497cea956ae515d2261898fa051015728e5a8aacaa68ffffffffffffffff", 16)
	pm1 := new(big.Int).Sub(p, big.NewInt(1)).Text(16)
	pm2 := new(big.Int).Sub(p, big.NewInt(2)).Text(16)
	get := func(priv, pub string) string {
		return "/generate-shared-key?" + url.Values{"local_private_key": {priv}, "remote_public_key": {pub}}.Encode()
	}
	invalid := `{"message":"Invalid public key"}` + "\n"
	tests := []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		want                     string // the whole body, or a substring when it starts with "~"
	}{
		{"key 0", "GET", get(tv.AlicePrivate, "0"), "", nil, 400, invalid},
		{"key 1", "GET", get(tv.AlicePrivate, "1"), "", nil, 400, invalid},
		{"key p-1", "GET", get(tv.AlicePrivate, pm1), "", nil, 400, invalid},
		{"key p-2 (non-residue)", "GET", get(tv.AlicePrivate, pm2), "", nil, 400, invalid},
		{"key p", "GET", get(tv.AlicePrivate, p.Text(16)), "", nil, 400, invalid},
		{"missing local", "GET", "/generate-shared-key?remote_public_key=" + tv.BobPublic, "", nil, 400, `{"message":"Missing parameter: local_private_key"}` + "\n"},
		{"missing remote", "GET", "/generate-shared-key?local_private_key=" + tv.AlicePrivate, "", nil, 400, `{"message":"Missing parameter: remote_public_key"}` + "\n"},
		{"public not hex", "GET", get(tv.AlicePrivate, "xyz"), "", nil, 400, `{"message":"Malformed remote_public_key: not hexadecimal"}` + "\n"},
		{"public 0x", "GET", get(tv.AlicePrivate, "0x2"), "", nil, 400, "~not hexadecimal"},
		{"public empty", "GET", get(tv.AlicePrivate, ""), "", nil, 400, `{"message":"Malformed remote_public_key: empty"}` + "\n"},
		{"public signed", "GET", get(tv.AlicePrivate, "-"+tv.BobPublic), "", nil, 400, "~remote_public_key: signed"},
		{"public too long", "GET", get(tv.AlicePrivate, strings.Repeat("1", 513)), "", nil, 400, "~remote_public_key: longer than the group allows"},
		{"private not hex", "GET", get("zz", tv.BobPublic), "", nil, 400, `{"message":"Malformed local_private_key: not hexadecimal"}` + "\n"},
		{"private zero", "GET", get("0", tv.BobPublic), "", nil, 400, "~Invalid private key"},
		{"unknown group", "GET", get(tv.AlicePrivate, tv.BobPublic) + "&group=13", "", nil, 400, "~Unknown group: \\\"13\\\""},
		{"unknown group keys", "GET", "/generate-keys?group=modp2", "", nil, 400, "~Unknown group"},
		{"wrong group for key", "GET", get(tv.AlicePrivate, tv.BobPublic) + "&group=x25519", "", nil, 400, "~Malformed remote_public_key: longer than the group allows"},
		{"bad json", "POST", "/generate-shared-key", "{", nil, 400, "~Malformed JSON body"},
		{"json array", "POST", "/generate-shared-key", "[]", nil, 400, "~Malformed JSON body"},
		{"unknown field", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","extra":1}`, nil, 400, "~unknown field"},
		{"number key", "POST", "/generate-shared-key", `{"local_private_key":1,"remote_public_key":"2"}`, nil, 400, "~field local_private_key must be a string"},
		{"bad group type", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":[]}`, nil, 400, "~field group must be"},
		{"missing json field", "POST", "/generate-shared-key", `{"local_private_key":"1"}`, nil, 400, "~Missing parameter: remote_public_key"},
		{"trailing json", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2"}{}`, nil, 400, "~trailing data"},
		{"json invalid key", "POST", "/generate-shared-key", `{"local_private_key":"` + tv.AlicePrivate + `","remote_public_key":"1"}`, nil, 400, invalid},
		{"too large", "POST", "/generate-shared-key", `{"local_private_key":"` + strings.Repeat("1", 2000) + `"}`, nil, 413, "~larger than 1024 bytes"},
		{"content type", "POST", "/generate-shared-key", `{}`, http.Header{"Content-Type": {"text/plain"}}, 415, "~application/json"},
		{"method keys", "POST", "/generate-keys", "", nil, 405, "~use GET"},
		{"method shared", "DELETE", "/generate-shared-key", "", nil, 405, "~use GET or POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := do(t, tt.method, srv.URL+tt.path, tt.body, tt.header)
			ok := body == tt.want
			if sub, isSub := strings.CutPrefix(tt.want, "~"); isSub {
				ok = strings.Contains(body, sub)
			}
			if status != tt.status || !ok {
				t.Errorf("%s %s: %d %q; want %d %q", tt.method, tt.name, status, body, tt.status, tt.want)
			}
			var e struct{ Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Message == "" {
				t.Errorf("body %q is not {\"message\": …}", body)
			}
		})
	}
}

func TestDisableGETSharedKey(t *testing.T) {
	srv := newServer(t, keyapi.Config{DisableGETSharedKey: true})
	status, body, hdr := do(t, "GET", srv.URL+"/generate-shared-key?local_private_key=1&remote_public_key=2", "", nil)
	if status != 405 || hdr.Get("Allow") != "POST, OPTIONS" || !strings.Contains(body, "use POST") {
		t.Errorf("GET with DisableGETSharedKey: %d %q Allow=%q", status, body, hdr.Get("Allow"))
	}
}

// preflight sends a CORS preflight for a JSON POST from origin.
func preflight(t *testing.T, u, origin string) (int, string, http.Header) {
	t.Helper()
	return do(t, "OPTIONS", u, "", http.Header{
		"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}})
}

// TestCORS: by default any page may read simple responses (the tutorial's
// GET), but preflighted requests (a JSON POST) are refused unless the
// origin is listed by name.
func TestCORS(t *testing.T) {
	t.Run("default: simple requests from any origin, no preflight", func(t *testing.T) {
		srv := newServer(t, keyapi.Config{})
		_, _, hdr := do(t, "GET", srv.URL+"/generate-keys", "", http.Header{"Origin": {"https://app.example"}})
		if got := hdr.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("GET: Allow-Origin = %q, want *", got)
		}
		status, body, hdr := preflight(t, srv.URL+"/generate-shared-key", "https://app.example")
		if status != http.StatusForbidden || hdr.Get("Access-Control-Allow-Origin") != "" || hdr.Get("Access-Control-Allow-Methods") != "" || !strings.Contains(body, "not allowed") {
			t.Errorf("preflight from any origin: %d %q %v, want 403 without CORS headers", status, body, hdr)
		}
		// A plain OPTIONS (no preflight) is still answered, as Flask does.
		if status, _, _ := do(t, "OPTIONS", srv.URL+"/generate-keys", "", nil); status != http.StatusNoContent {
			t.Errorf("plain OPTIONS: %d, want 204", status)
		}
	})
	t.Run("listed origins only", func(t *testing.T) {
		srv := newServer(t, keyapi.Config{AllowedOrigins: []string{"https://good.example", "*"}})
		_, _, hdr := do(t, "GET", srv.URL+"/generate-keys", "", http.Header{"Origin": {"https://good.example"}})
		if got := hdr.Get("Access-Control-Allow-Origin"); got != "https://good.example" || hdr.Get("Vary") != "Origin" {
			t.Errorf("listed origin: Allow-Origin %q Vary %q", got, hdr.Get("Vary"))
		}
		status, body, hdr := preflight(t, srv.URL+"/generate-shared-key", "https://good.example")
		if status != 204 || body != "" || hdr.Get("Access-Control-Allow-Origin") != "https://good.example" ||
			hdr.Get("Access-Control-Allow-Methods") != "GET, POST, OPTIONS" || hdr.Get("Access-Control-Allow-Headers") != "Content-Type" {
			t.Errorf("preflight from a listed origin: %d %q %v", status, body, hdr)
		}
		if status, _, hdr := preflight(t, srv.URL+"/generate-shared-key", "https://evil.example"); status != http.StatusForbidden || hdr.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("preflight from an unlisted origin (with * listed): %d %v", status, hdr)
		}
	})
	t.Run("listed origins without *", func(t *testing.T) {
		srv := newServer(t, keyapi.Config{AllowedOrigins: []string{"https://good.example"}})
		_, _, hdr := do(t, "GET", srv.URL+"/generate-keys", "", http.Header{"Origin": {"https://evil.example"}})
		if got := hdr.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("unlisted origin got Allow-Origin %q", got)
		}
	})
	if _, err := keyapi.New(keyapi.Config{AllowedOrigins: []string{"good.example"}}, nil); err == nil {
		t.Error("New accepted an origin without a scheme")
	}
	if _, err := keyapi.New(keyapi.Config{MaxConcurrent: -1}, nil); err == nil {
		t.Error("New accepted a negative limit")
	}
}
