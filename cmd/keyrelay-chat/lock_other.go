//go:build !unix

package main

import "os"

// lockFile does nothing where flock(2) does not exist: there, the user
// must not run two keyrelay-chat processes with one --state file.
func lockFile(*os.File) error { return nil }
