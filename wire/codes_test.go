package wire_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/wire"
)

// update makes TestCodesJSON rewrite codes.json instead of comparing it:
// go test ./wire -run TestCodesJSON -update
var update = flag.Bool("update", false, "rewrite wire/codes.json from the Go constants")

// closeCodes holds the value of every Close constant of the package.
// TestCodesJSON checks that it names each one that wire.go declares, so a
// close code added there and forgotten here fails the test.
var closeCodes = map[string]websocket.StatusCode{
	"CloseNormal":            wire.CloseNormal,
	"CloseGoingAway":         wire.CloseGoingAway,
	"CloseTooBig":            wire.CloseTooBig,
	"CloseStoreUnavailable":  wire.CloseStoreUnavailable,
	"CloseNoSubprotocol":     wire.CloseNoSubprotocol,
	"CloseSlowReader":        wire.CloseSlowReader,
	"CloseSuperseded":        wire.CloseSuperseded,
	"CloseTooManyConnsPerIP": wire.CloseTooManyConnsPerIP,
}

// vocabulary is codes.json: the protocol's constants for clients in other
// languages (web/test/wire.test.mjs reads it).
type vocabulary struct {
	Comment     string         `json:"comment"`
	Subprotocol string         `json:"subprotocol"`
	Path        string         `json:"path"`
	FrameTypes  []string       `json:"frame_types"`
	Codes       []string       `json:"codes"`
	CloseCodes  map[string]int `json:"close_codes"`
	Reasons     []string       `json:"peer_left_reasons"`
}

// constants returns, from the package's source, the string constants of
// each named type in declaration order, and the names of the Close
// constants: read from the declarations, so that nothing lists them twice.
func constants(t *testing.T) (byType map[string][]string, closes []string) {
	t.Helper()
	fset := token.NewFileSet()
	byType = map[string][]string{}
	for _, name := range []string{"wire.go"} {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if strings.HasPrefix(id.Name, "Close") {
						closes = append(closes, id.Name)
						continue
					}
					typ, ok := vs.Type.(*ast.Ident)
					if !ok || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					byType[typ.Name] = append(byType[typ.Name], v)
				}
			}
		}
	}
	return byType, closes
}

// snake turns "NoSubprotocol" into "no_subprotocol".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 && !unicode.IsUpper(rune(s[i-1])) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func build(t *testing.T) vocabulary {
	t.Helper()
	byType, closes := constants(t)
	v := vocabulary{
		Comment:     "generated from package wire; do not edit: go test ./wire -run TestCodesJSON -update",
		Subprotocol: wire.Subprotocol,
		Path:        wire.Path,
		FrameTypes:  byType["FrameType"],
		Codes:       byType["Code"],
		CloseCodes:  map[string]int{},
		Reasons:     byType["Reason"],
	}
	for _, name := range closes {
		code, ok := closeCodes[name]
		if !ok {
			t.Fatalf("wire.%s is not in closeCodes", name)
		}
		v.CloseCodes[snake(strings.TrimPrefix(name, "Close"))] = int(code)
	}
	if len(closes) != len(closeCodes) {
		t.Fatalf("closeCodes has %d entries, wire.go declares %d Close constants", len(closeCodes), len(closes))
	}
	if len(v.FrameTypes) < 16 || len(v.Codes) < 25 || len(v.Reasons) < 2 {
		t.Fatalf("parsed too few constants: %+v", v)
	}
	return v
}

// TestCodesJSON checks that codes.json lists exactly the Go constants.
func TestCodesJSON(t *testing.T) {
	got, err := json.MarshalIndent(build(t), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile("codes.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("codes.json")
	if err != nil {
		t.Fatalf("%v (run go test ./wire -run TestCodesJSON -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("codes.json is out of date: go test ./wire -run TestCodesJSON -update")
	}
}

// section returns the text of docs/protocol.md from the heading that starts
// with prefix to the next heading of the same level.
func section(t *testing.T, doc, prefix string) string {
	t.Helper()
	start := strings.Index(doc, "\n"+prefix)
	if start < 0 {
		t.Fatalf("docs/protocol.md has no heading %q", prefix)
	}
	level := strings.SplitN(prefix, " ", 2)[0] + " "
	rest := doc[start+1:]
	if end := strings.Index(rest[len(prefix):], "\n"+level); end >= 0 {
		return rest[:len(prefix)+end]
	}
	return rest
}

// TestDocumented checks that docs/protocol.md names every error code and
// close code in §4's tables and every frame type in §2's, each as a table
// row of its own.
func TestDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	v := build(t)
	errs := section(t, doc, "## 4.")
	for _, c := range v.Codes {
		if !regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(c) + "` \\|").MatchString(errs) {
			t.Errorf("error code %q has no row in docs/protocol.md §4", c)
		}
	}
	for name, c := range v.CloseCodes {
		if !regexp.MustCompile("(?m)^\\| " + strconv.Itoa(c) + " \\|").MatchString(errs) {
			t.Errorf("close code %d (%s) has no row in docs/protocol.md §4", c, name)
		}
	}
	frames := section(t, doc, "## 2.")
	for _, ft := range v.FrameTypes {
		if !regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(ft) + "` \\|").MatchString(frames) {
			t.Errorf("frame type %q has no row in docs/protocol.md §2", ft)
		}
	}
	for _, r := range v.Reasons {
		if !strings.Contains(frames, "`"+r+"`") {
			t.Errorf("peer_left reason %q is not in docs/protocol.md §2", r)
		}
	}
	if !strings.Contains(doc, "`"+wire.Subprotocol+"`") {
		t.Errorf("docs/protocol.md does not name the subprotocol %s", wire.Subprotocol)
	}
}
