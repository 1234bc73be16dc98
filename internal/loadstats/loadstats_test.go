package loadstats_test

import (
	"errors"
	"testing"

	"github.com/keyrelay/keyrelay/internal/loadstats"
)

func TestStageErrorText(t *testing.T) {
	for _, tt := range []struct {
		stage, err, want string
	}{
		{"join", "the room already has two peers (room_full)", "join: the room already has two peers (room_full)"},
		{"join", "join: the room already has two peers (room_full)", "join: the room already has two peers (room_full)"},
		{"resume", "join: x", "resume: join: x"},
	} {
		if got := (loadstats.StageError{Stage: tt.stage, Err: errors.New(tt.err)}).Error(); got != tt.want {
			t.Errorf("StageError{%q, %q} = %q, want %q", tt.stage, tt.err, got, tt.want)
		}
	}
}
