package main

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/keyrelay/keyrelay/wire"
)

// TestEndOfInputWhileWaiting: Ctrl-D while waiting for the other person
// leaves the room and exits 0 (it used to wait for the key exchange).
func TestEndOfInputWhileWaiting(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := start(t, ctx, []string{"--url", url}, config{}, nil)
	a.screen.waitFor(t, ctx, `\* waiting for them to join`)
	a.stdin.Close()
	if err := a.wait(t, ctx); err != nil {
		t.Errorf("run = %v, want nil", err)
	}
	a.screen.waitFor(t, ctx, `\* left the room\n\* bye\n$`)
}

// TestJoinOtherGroup: a joiner told the room is x25519 refuses a room in
// another group; one told nothing accepts it.
func TestJoinOtherGroup(t *testing.T) {
	url := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := start(t, ctx, []string{"--url", url, "--group", "p256"}, config{}, nil)
	id := a.screen.waitFor(t, ctx, roomRE)[1]
	b := start(t, ctx, []string{"--url", url, "--group", "x25519", "--room", id}, config{}, nil)
	err := b.wait(t, ctx)
	if want := "the relay changed the group from x25519 to p256; refusing"; err == nil || err.Error() != want {
		t.Errorf("run = %v, want %q", err, want)
	}
	c := start(t, ctx, []string{"--url", url, "--room", id}, config{}, nil)
	c.screen.waitFor(t, ctx, `handshake complete \(p256\)`)
}

// TestDowngradeRefused: issue 12's attack. A relay that answers create
// x25519 with a modp5 room is refused with a clear message.
func TestDowngradeRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{wire.Subprotocol}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		_, data, err := ws.Read(r.Context())
		if err != nil {
			return
		}
		var f map[string]any
		json.Unmarshal(data, &f)
		reply, _ := json.Marshal(map[string]any{"type": "room", "id": f["id"], "room": "6f1c9a52-3b7e-4d0a-9e57-1b2c3d4e5f60",
			"peer": "a1", "resume_token": "tok", "group": "modp5", "peers": 1, "resumed": false})
		ws.Write(r.Context(), websocket.MessageText, reply)
		for {
			if _, _, err := ws.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + wire.Path
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, args := range [][]string{{"--url", url}, {"--url", url, "--allow-legacy-groups"}} {
		a := start(t, ctx, args, config{}, nil)
		err := a.wait(t, ctx)
		if want := "the relay changed the group from x25519 to modp5; refusing"; err == nil || err.Error() != want {
			t.Errorf("%v: run = %v, want %q", args, err, want)
		}
		if strings.Contains(a.screen.String(), "created") {
			t.Errorf("%v: the screen shows a room:\n%s", args, a.screen)
		}
	}
}

// TestOutputLinesDocumented: every line keyrelay-chat prints goes through
// one of the line… formats, and each is listed, as --help prints it, in
// the package doc and in --help, so that scripts can rely on the list.
func TestOutputLinesDocumented(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`printf\("`).FindAll(src, -1); len(m) > 0 {
		t.Errorf("main.go prints %d literal formats; use the line… constants", len(m))
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "main.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	listed := make(map[string]bool)
	for _, l := range outputLines {
		listed[l.format] = true
	}
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "line") {
					continue
				}
				v, err := strconv.Unquote(vs.Values[i].(*ast.BasicLit).Value)
				if err != nil || !listed[v] {
					t.Errorf("%s is not in outputLines", name.Name)
				}
			}
		}
	}
	doc := file.Doc.Text()
	var help strings.Builder
	if _, done, err := parseConfig([]string{"--help"}, func(string) string { return "" }, &help); !done || err != nil {
		t.Fatalf("parseConfig(--help) = %v, %v", done, err)
	}
	for _, l := range outputLines {
		line := strings.TrimSuffix(fmt.Sprintf(l.format, l.fields...), "\n")
		if !strings.Contains(doc, line+"\n") {
			t.Errorf("the package doc does not list %q", line)
		}
		if !strings.Contains(help.String(), "  "+line+"\n") {
			t.Errorf("--help does not list %q", line)
		}
	}
}
