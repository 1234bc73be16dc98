package main

import (
	"os"
	"testing"
)

// FuzzParseScript feeds arbitrary scenario files to the parser and checker:
// they must refuse what they cannot run with an error, never panic.
func FuzzParseScript(f *testing.F) {
	if b, err := os.ReadFile("testdata/example-scenario.json"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		`{"name":"x","steps":[{"do":"connect"},{"do":"create"},{"do":"join"},{"do":"handshake"},{"do":"chat","count":2,"size":10}]}`,
		`{"steps":[{"do":"send","from":"c","count":-1}]}`,
		`{"steps":[{"do":"sleep","duration":"1h"}]}`,
		`{"steps":null}`, `[]`, `{"steps":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseScript(data)
		if err != nil {
			return
		}
		if s == nil {
			t.Fatal("nil script without an error")
		}
	})
}
