package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/keyrelay/keyrelay/relay/client"
)

// errStateNotSaved is the error the client's SaveState returns when the
// state file could not be written: the message is then not sent.
var errStateNotSaved = errors.New("state not saved")

// stateFile is --state: the file that keeps the client's State (a secret:
// it holds the private key) so that a restarted keyrelay-chat takes its
// seat back. It is written atomically (a temporary file in the same
// directory, synced, renamed over it) with mode 0600, and FILE.lock is
// locked for as long as the process uses it, so that two processes never
// restore one seat (their message counters, the nonces, would repeat).
type stateFile struct {
	path string
	lock *os.File // holds the lock on path+".lock"

	mu      sync.Mutex // guards removed, and orders save against remove
	removed bool       // the seat is gone: nothing more is saved
}

// openState locks path's lock file. It fails if another process holds it.
func openState(path string) (*stateFile, error) {
	lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		return nil, fmt.Errorf("--state %s is in use by another keyrelay-chat (%s is locked): %w", path, lf.Name(), err)
	}
	return &stateFile{path: path, lock: lf}, nil
}

// close releases the lock. The lock file stays: removing it would let two
// processes lock two different files of one name.
func (f *stateFile) close() {
	if f != nil {
		f.lock.Close()
	}
}

// load returns the State in the file, or nil if there is no file. A file
// that others than its owner may read or write is refused.
func (f *stateFile) load() (*client.State, error) {
	fi, err := os.Stat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("--state %s may be read by others (mode %04o), and it holds a private key: chmod 600 it", f.path, perm)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	var st client.State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("--state %s is not a keyrelay-chat state file: %w", f.path, err)
	}
	return &st, nil
}

// save writes st to the file atomically, mode 0600, and syncs it to disk
// before it returns: the client sends nothing that the file does not
// cover.
func (f *stateFile) save(st client.State) (err error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed {
		return nil
	}
	dir, base := filepath.Split(f.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(b); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	// The rename itself must reach the disk too.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// remove deletes the file once the seat is gone (left, expired, refused):
// nothing is saved after it. A nil stateFile does nothing.
func (f *stateFile) remove() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = true
	if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--state: %w", err)
	}
	return nil
}

// lost removes the file after err, which says the seat is gone for
// good, and returns err saying so. A nil stateFile returns err.
func (f *stateFile) lost(err error) error {
	if f == nil {
		return err
	}
	if rerr := f.remove(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return fmt.Errorf("the seat is lost: %w (the state file was removed; run again to start afresh)", err)
}
