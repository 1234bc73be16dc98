package redisx

import (
	_ "embed"
	"io/fs"
	"path"

	"github.com/redis/go-redis/v9"
)

// prelude defines what every script can use: int(x), which formats a
// number as an integer, and now, the Redis server's time in ms.
//
//go:embed prelude.lua
var prelude string

// LoadScript returns the script dir/name.lua of fsys (normally an
// embed.FS), preceded by the prelude (the local function int and the local
// now, the Redis server's time in ms) and by dir/lib.lua, the part that
// every script of the caller's starts with. The three are joined by
// newlines into one chunk, so each later part sees the locals of the
// earlier ones. If dir holds an epilogue.lua, the script's own part is
// wrapped in a local function main, and the epilogue follows it: the
// epilogue calls main and returns the script's reply, amended as the
// package needs.
//
// It panics if either file cannot be read: for embedded files, a mistake
// that the first test finds. Call it when a package initialises.
func LoadScript(fsys fs.FS, dir, name string) *redis.Script {
	return loadScript(fsys, dir, name, "")
}

// LoadScriptAllowOOM is LoadScript for a script that Redis must run even
// when it is full (maxmemory reached, under noeviction): it starts with
// the shebang "#!lua flags=allow-oom" (Redis 7), which also makes Redis
// check that the script touches only the keys it declares. Use it only
// for scripts whose writes are small and must not fail, such as an
// instance's lease.
func LoadScriptAllowOOM(fsys fs.FS, dir, name string) *redis.Script {
	return loadScript(fsys, dir, name, "#!lua flags=allow-oom\n")
}

// loadScript is LoadScript with a first line.
func loadScript(fsys fs.FS, dir, name, first string) *redis.Script {
	lib, err := fs.ReadFile(fsys, path.Join(dir, "lib.lua"))
	if err != nil {
		panic("redisx: " + err.Error())
	}
	op, err := fs.ReadFile(fsys, path.Join(dir, name+".lua"))
	if err != nil {
		panic("redisx: " + err.Error())
	}
	body := string(op)
	if epilogue, err := fs.ReadFile(fsys, path.Join(dir, "epilogue.lua")); err == nil {
		body = "local function main()\n" + body + "\nend\n" + string(epilogue)
	}
	return redis.NewScript(first + prelude + "\n" + string(lib) + "\n" + body)
}
