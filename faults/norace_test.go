//go:build !race

package faults

// raceEnabled reports whether the tests run with the race detector; the
// relay binary is then built with it too.
const raceEnabled = false
