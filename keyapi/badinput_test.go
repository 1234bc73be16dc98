package keyapi_test

import (
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/keyrelay/keyrelay/keyapi"
)

// apiCase is one bad request and the response the API documents for it.
type apiCase struct {
	name, method, path, body string
	header                   http.Header
	status                   int
	// want is the whole body, or a substring when it starts with "~";
	// notWant, if set, must not appear in the body.
	want, notWant string
}

// TestBadInputHTTP sends every kind of malformed request to the key API
// over real HTTP and checks the status and the {"message": …} body of the
// package documentation and TestErrors, and that the server never answers
// 500 and keeps serving.
func TestBadInputHTTP(t *testing.T) {
	const limit = 4096
	srv := newServer(t, keyapi.Config{MaxBodyBytes: limit})
	for _, tt := range badRequests(t, limit) {
		t.Run(tt.name, func(t *testing.T) {
			status, body, hdr := do(t, tt.method, srv.URL+tt.path, tt.body, tt.header)
			if status == http.StatusInternalServerError {
				t.Fatalf("500: %q", clip(body))
			}
			ok := body == tt.want
			if sub, isSub := strings.CutPrefix(tt.want, "~"); isSub {
				ok = strings.Contains(body, sub)
			}
			if tt.notWant != "" && strings.Contains(body, tt.notWant) {
				ok = false
			}
			if status != tt.status || !ok {
				t.Errorf("%s %s: %d %q; want %d %q (and not %q)", tt.method, clip(tt.path), status, clip(body), tt.status, tt.want, tt.notWant)
			}
			if body != "" {
				if ct := hdr.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				if cc := hdr.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
			}
			if status >= 400 {
				var e struct{ Message string }
				dec := json.NewDecoder(strings.NewReader(body))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&e); err != nil || e.Message == "" {
					t.Errorf("body %q is not {\"message\": …}", clip(body))
				}
				if len(e.Message) > 200 {
					t.Errorf("message of %d bytes: the input is echoed unbounded", len(e.Message))
				}
			}
			if status == http.StatusMethodNotAllowed {
				// RFC 9110 §15.5.6: Allow lists the methods the resource
				// supports; the one refused cannot be among them.
				for _, m := range strings.Split(hdr.Get("Allow"), ", ") {
					if m == tt.method {
						t.Errorf("405 for %s with Allow %q, which lists it", tt.method, hdr.Get("Allow"))
					}
				}
			}
		})
	}
	// The server is still serving after all of it.
	status, body, _ := do(t, "GET", srv.URL+"/generate-keys?group=x25519", "", nil)
	if status != http.StatusOK {
		t.Fatalf("after the bad requests: %d %q", status, body)
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

type ecVector struct {
	Group        string `json:"group"`
	AlicePrivate string `json:"alice_private"`
	BobPublic    string `json:"bob_public"`
	SharedSecret string `json:"shared_secret"`
}

func badRequests(t *testing.T, limit int) []apiCase {
	t.Helper()
	var ec []ecVector
	raw, err := os.ReadFile("../dh/testdata/ec_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ec); err != nil {
		t.Fatal(err)
	}
	x, p256 := ec[0], ec[1]
	if x.Group != "x25519" || p256.Group != "p256" {
		t.Fatalf("ec_vectors.json holds %s and %s, want x25519 and p256", x.Group, p256.Group)
	}
	var fixture struct {
		Primes map[string]string `json:"primes"`
	}
	raw, err = os.ReadFile("../dh/testdata/rfc3526-node.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatal(err)
	}
	p, _ := new(big.Int).SetString(fixture.Primes["modp14"], 16)
	modp := func(d int64) string { return new(big.Int).Add(p, big.NewInt(d)).Text(16) }
	q := new(big.Int).Rsh(p, 1).Text(16)
	nonResidue := big.NewInt(2)
	for big.Jacobi(nonResidue, p) != -1 {
		nonResidue.Add(nonResidue, big.NewInt(1))
	}
	tv := seedVectors(t)[1] // modp14
	if tv.Group != "modp14" {
		t.Fatalf("seed vector 1 is %s, want modp14", tv.Group)
	}
	okBody := `{"shared_key":"` + tv.SharedKey + `"}` + "\n"

	get := func(priv, pub, group string) string {
		v := url.Values{"local_private_key": {priv}, "remote_public_key": {pub}}
		if group != "" {
			v.Set("group", group)
		}
		return "/generate-shared-key?" + v.Encode()
	}
	post := func(fields map[string]any) string {
		b, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	withCT := func(ct string) http.Header { return http.Header{"Content-Type": {ct}} }
	valid := post(map[string]any{"local_private_key": tv.AlicePrivate, "remote_public_key": tv.BobPublic})
	invalid := `{"message":"Invalid public key"}` + "\n"
	deep := strings.Repeat("[", 1500) + strings.Repeat("]", 1500)

	cases := []apiCase{
		// Methods.
		{"method/POST generate-keys", "POST", "/generate-keys", "", nil, 405, "~use GET", ""},
		{"method/PUT generate-keys", "PUT", "/generate-keys", "", nil, 405, "~use GET", ""},
		{"method/DELETE generate-keys", "DELETE", "/generate-keys", "", nil, 405, "~use GET", ""},
		{"method/PATCH shared", "PATCH", "/generate-shared-key", valid, jsonCT, 405, "~use GET or POST", ""},
		{"method/PUT shared", "PUT", "/generate-shared-key", valid, jsonCT, 405, "~use GET or POST", ""},
		{"method/TRACE shared", "TRACE", "/generate-shared-key", "", nil, 405, "~use GET or POST", ""},
		{"method/made-up", "BREW", "/generate-keys", "", nil, 405, "~use GET", ""},
		// OPTIONS that is not a CORS preflight: the API's Allow headers
		// list OPTIONS, so it must not get 405; answered as a preflight is
		// (204, no body). Flask answers 200 with an Allow header.
		{"method/OPTIONS without preflight", "OPTIONS", "/generate-keys", "", nil, 204, "", ""},

		// Content types (POST).
		{"content type/text/plain", "POST", "/generate-shared-key", valid, withCT("text/plain"), 415, "~application/json", ""},
		{"content type/form", "POST", "/generate-shared-key", "local_private_key=1&remote_public_key=2", withCT("application/x-www-form-urlencoded"), 415, "~application/json", ""},
		{"content type/multipart", "POST", "/generate-shared-key", valid, withCT("multipart/form-data; boundary=x"), 415, "~application/json", ""},
		{"content type/application/jsonx", "POST", "/generate-shared-key", valid, withCT("application/jsonx"), 415, "~application/json", ""},
		{"content type/with charset", "POST", "/generate-shared-key", valid, withCT("application/json; charset=utf-8"), 200, okBody, ""},
		{"content type/upper case", "POST", "/generate-shared-key", valid, withCT("Application/JSON"), 200, okBody, ""},
		{"content type/none", "POST", "/generate-shared-key", valid, nil, 200, okBody, ""},

		// Invalid JSON.
		{"json/empty body", "POST", "/generate-shared-key", "", jsonCT, 400, "~Malformed JSON body", ""},
		{"json/truncated", "POST", "/generate-shared-key", valid[:len(valid)-3], jsonCT, 400, "~Malformed JSON body", ""},
		{"json/single quotes", "POST", "/generate-shared-key", `{'local_private_key':'1'}`, jsonCT, 400, "~Malformed JSON body", ""},
		{"json/trailing comma", "POST", "/generate-shared-key", valid[:len(valid)-1] + ",}", jsonCT, 400, "~Malformed JSON body", ""},
		{"json/array", "POST", "/generate-shared-key", `[]`, jsonCT, 400, "~Malformed JSON body", "field  must"},
		{"json/string", "POST", "/generate-shared-key", `"x"`, jsonCT, 400, "~Malformed JSON body", "field  must"},
		{"json/number", "POST", "/generate-shared-key", `42`, jsonCT, 400, "~Malformed JSON body", "field  must"},
		{"json/null", "POST", "/generate-shared-key", `null`, jsonCT, 400, "~Missing parameter: local_private_key", ""},
		{"json/empty object", "POST", "/generate-shared-key", `{}`, jsonCT, 400, "~Missing parameter: local_private_key", ""},
		{"json/two objects", "POST", "/generate-shared-key", valid + `{}`, jsonCT, 400, "~trailing data", ""},
		{"json/trailing garbage", "POST", "/generate-shared-key", valid + ` x`, jsonCT, 400, "~trailing data", ""},
		{"json/trailing whitespace", "POST", "/generate-shared-key", valid + " \n", jsonCT, 200, okBody, ""},
		{"json/nested deep", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":` + deep + `}`, jsonCT, 400, "~field group must be a number or a string", ""},
		{"json/NaN", "POST", "/generate-shared-key", `{"local_private_key":NaN}`, jsonCT, 400, "~Malformed JSON body", ""},

		// Missing and unknown fields.
		{"fields/missing local (GET)", "GET", "/generate-shared-key?remote_public_key=" + tv.BobPublic, "", nil, 400, `{"message":"Missing parameter: local_private_key"}` + "\n", ""},
		{"fields/missing remote (GET)", "GET", "/generate-shared-key?local_private_key=" + tv.AlicePrivate, "", nil, 400, `{"message":"Missing parameter: remote_public_key"}` + "\n", ""},
		{"fields/none (GET)", "GET", "/generate-shared-key", "", nil, 400, `{"message":"Missing parameter: local_private_key"}` + "\n", ""},
		{"fields/missing remote (POST)", "POST", "/generate-shared-key", post(map[string]any{"local_private_key": tv.AlicePrivate}), jsonCT, 400, `{"message":"Missing parameter: remote_public_key"}` + "\n", ""},
		{"fields/null local (POST)", "POST", "/generate-shared-key", `{"local_private_key":null,"remote_public_key":"` + tv.BobPublic + `"}`, jsonCT, 400, "~Missing parameter: local_private_key", ""},
		{"fields/unknown (POST)", "POST", "/generate-shared-key", valid[:len(valid)-1] + `,"extra":1}`, jsonCT, 400, "~unknown field", ""},
		// Python's dict is case-sensitive: the tutorial's server does not
		// read LOCAL_PRIVATE_KEY as local_private_key.
		{"fields/case-folded name (POST)", "POST", "/generate-shared-key", `{"LOCAL_PRIVATE_KEY":"` + tv.AlicePrivate + `","remote_public_key":"` + tv.BobPublic + `"}`, jsonCT, 400, "~local_private_key", ""},

		// Wrong types (POST).
		{"types/local number", "POST", "/generate-shared-key", `{"local_private_key":1,"remote_public_key":"2"}`, jsonCT, 400, "~field local_private_key must be a string", ""},
		{"types/remote bool", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":true}`, jsonCT, 400, "~field remote_public_key must be a string", ""},
		{"types/remote array", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":["2"]}`, jsonCT, 400, "~field remote_public_key must be a string", ""},
		{"types/local object", "POST", "/generate-shared-key", `{"local_private_key":{"a":1},"remote_public_key":"2"}`, jsonCT, 400, "~field local_private_key must be a string", ""},
		{"types/local huge number", "POST", "/generate-shared-key", `{"local_private_key":1e400,"remote_public_key":"2"}`, jsonCT, 400, "~field local_private_key must be a string", ""},
		{"types/group array", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":[]}`, jsonCT, 400, "~field group must be a number or a string", ""},
		{"types/group float", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":14.5}`, jsonCT, 400, "~field group must be a number or a string", ""},
		{"types/group bool", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":true}`, jsonCT, 400, "~field group must be a number or a string", ""},
		{"types/group negative", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":-14}`, jsonCT, 400, "~Unknown group", ""},
		{"types/group empty string", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":""}`, jsonCT, 400, "~Unknown group", ""},

		// Sizes.
		{"size/body over the limit", "POST", "/generate-shared-key", `{"local_private_key":"` + strings.Repeat("1", limit) + `"}`, jsonCT, 413, "~larger than 4096 bytes", ""},
		{"size/body at the limit", "POST", "/generate-shared-key", valid + strings.Repeat(" ", limit-len(valid)), jsonCT, 200, okBody, ""},
		{"size/over the limit in trailing whitespace", "POST", "/generate-shared-key", valid + strings.Repeat(" ", 2*limit), jsonCT, 413, "~larger than 4096 bytes", ""},
		{"size/100 KB key in the query", "GET", get(tv.AlicePrivate, strings.Repeat("f", 100000), ""), "", nil, 400, "~remote_public_key: longer than the group allows", ""},
		{"size/100 KB group in the query", "GET", "/generate-keys?group=" + strings.Repeat("g", 100000), "", nil, 400, "~Unknown group", ""},

		// Groups.
		{"group/unknown number", "GET", get(tv.AlicePrivate, tv.BobPublic, "13"), "", nil, 400, "~Unknown group: \\\"13\\\"", ""},
		{"group/leading zero", "GET", get(tv.AlicePrivate, tv.BobPublic, "014"), "", nil, 400, "~Unknown group", ""},
		{"group/upper case", "GET", "/generate-keys?group=X25519", "", nil, 400, "~Unknown group", ""},
		{"group/modp2", "GET", "/generate-keys?group=modp2", "", nil, 400, "~Unknown group", ""},
		{"group/number in POST", "POST", "/generate-shared-key", `{"local_private_key":"1","remote_public_key":"2","group":2}`, jsonCT, 400, "~Unknown group", ""},
		{"group/non-ASCII", "GET", "/generate-keys?group=" + url.QueryEscape("modp١٤"), "", nil, 400, "~Unknown group", ""},
	}

	// Public keys, through GET and POST: MODP group 14 (the default).
	type keyCase struct {
		name, group, priv, pub string
		status                 int
		want                   string
	}
	keys := []keyCase{
		{"modp14/0", "", tv.AlicePrivate, "0", 400, invalid},
		{"modp14/1", "", tv.AlicePrivate, "1", 400, invalid},
		{"modp14/p-1", "", tv.AlicePrivate, modp(-1), 400, invalid},
		{"modp14/p", "", tv.AlicePrivate, modp(0), 400, invalid},
		{"modp14/p+1", "", tv.AlicePrivate, modp(1), 400, invalid},
		{"modp14/non-residue " + nonResidue.String(), "", tv.AlicePrivate, nonResidue.Text(16), 400, invalid},
		{"modp14/too long", "", tv.AlicePrivate, "0" + strings.Repeat("1", 512), 400, "~remote_public_key: longer than the group allows"},
		{"modp14/minus sign", "", tv.AlicePrivate, "-" + tv.BobPublic, 400, "~remote_public_key: signed"},
		{"modp14/plus sign", "", tv.AlicePrivate, "+" + tv.BobPublic, 400, "~remote_public_key: signed"},
		{"modp14/0x prefix", "", tv.AlicePrivate, "0x4", 400, "~remote_public_key: not hexadecimal"},
		{"modp14/space", "", tv.AlicePrivate, " 4", 400, "~remote_public_key: not hexadecimal"},
		{"modp14/newline", "", tv.AlicePrivate, "4\n", 400, "~remote_public_key: not hexadecimal"},
		{"modp14/empty", "", tv.AlicePrivate, "", 400, `{"message":"Malformed remote_public_key: empty"}` + "\n"},
		{"modp14/upper-case hex accepted", "", strings.ToUpper(tv.AlicePrivate), strings.ToUpper(tv.BobPublic), 200, okBody},
		{"modp14/leading zeros accepted", "", "000" + tv.AlicePrivate, strings.Repeat("0", 512-len(tv.BobPublic)) + tv.BobPublic, 200, okBody},
		{"modp14/private 0", "", "0", tv.BobPublic, 400, "~Invalid private key"},
		{"modp14/private q", "", q, tv.BobPublic, 400, "~Invalid private key"},
		{"modp14/private too long", "", strings.Repeat("1", 513), tv.BobPublic, 400, "~local_private_key: longer than the group allows"},
		{"modp14/private signed", "", "-" + tv.AlicePrivate, tv.BobPublic, 400, "~local_private_key: signed"},
		{"modp14/private empty", "", "", tv.BobPublic, 400, "~local_private_key: empty"},
		{"modp14/not hex", "", tv.AlicePrivate, x.BobPublic + "zz", 400, "~remote_public_key: not hexadecimal"},

		// x25519: low order, non-canonical, wrong lengths.
		{"x25519/zero", "x25519", x.AlicePrivate, strings.Repeat("00", 32), 400, invalid},
		{"x25519/one", "x25519", x.AlicePrivate, "01" + strings.Repeat("00", 31), 400, invalid},
		{"x25519/order 8", "x25519", x.AlicePrivate, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", 400, invalid},
		{"x25519/p-1", "x25519", x.AlicePrivate, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", 400, invalid},
		{"x25519/p", "x25519", x.AlicePrivate, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", 400, invalid},
		{"x25519/top bit set", "x25519", x.AlicePrivate, x.BobPublic[:62] + "cf", 400, invalid},
		{"x25519/31 bytes", "x25519", x.AlicePrivate, x.BobPublic[:62], 400, "~remote_public_key: wrong length for the group"},
		{"x25519/odd length", "x25519", x.AlicePrivate, x.BobPublic[:63], 400, "~remote_public_key: wrong length for the group"},
		{"x25519/33 bytes", "x25519", x.AlicePrivate, x.BobPublic + "00", 400, "~remote_public_key: longer than the group allows"},
		{"x25519/p256 key", "x25519", x.AlicePrivate, p256.BobPublic, 400, "~remote_public_key: longer than the group allows"},
		{"x25519/private short", "x25519", x.AlicePrivate[:62], x.BobPublic, 400, "~local_private_key: wrong length for the group"},
		{"x25519/upper-case hex accepted", "x25519", strings.ToUpper(x.AlicePrivate), strings.ToUpper(x.BobPublic), 200, "~shared_key"},

		// p256: uncompressed points on the curve only.
		{"p256/off the curve", "p256", p256.AlicePrivate, p256.BobPublic[:129] + "c", 400, invalid},
		{"p256/compressed", "p256", p256.AlicePrivate, "03" + p256.BobPublic[2:66], 400, "~remote_public_key: wrong length for the group"},
		{"p256/compressed tag on 65 bytes", "p256", p256.AlicePrivate, "02" + p256.BobPublic[2:], 400, invalid},
		{"p256/infinity", "p256", p256.AlicePrivate, strings.Repeat("00", 65), 400, invalid},
		{"p256/infinity as 00", "p256", p256.AlicePrivate, "00", 400, "~remote_public_key: wrong length for the group"},
		{"p256/x25519 key", "p256", p256.AlicePrivate, x.BobPublic, 400, "~remote_public_key: wrong length for the group"},
		{"p256/private 0", "p256", strings.Repeat("0", 64), p256.BobPublic, 400, "~Invalid private key"},
		{"p256/private n or above", "p256", strings.Repeat("f", 64), p256.BobPublic, 400, "~Invalid private key"},
		{"p256/upper-case hex accepted", "p256", strings.ToUpper(p256.AlicePrivate), strings.ToUpper(p256.BobPublic), 200, "~shared_key"},
	}
	for _, k := range keys {
		cases = append(cases, apiCase{k.name + " (GET)", "GET", get(k.priv, k.pub, k.group), "", nil, k.status, k.want, ""})
		fields := map[string]any{"local_private_key": k.priv, "remote_public_key": k.pub}
		if k.group != "" {
			fields["group"] = k.group
		}
		cases = append(cases, apiCase{k.name + " (POST)", "POST", "/generate-shared-key", post(fields), jsonCT, k.status, k.want, ""})
	}
	return cases
}
