package loadstats

import (
	"errors"
	"fmt"
	"time"
)

// Shape is how much load a run applies and for how long, from the flags
// both load tools share (--pairs, --connections, --concurrency,
// --duration, --timeout, --max-error-rate).
type Shape struct {
	Pairs        int           // pairs to run; 0: until Duration
	Connections  int           // idle: connections to hold
	Concurrency  int           // pairs in flight at once; idle: connections being opened at once
	Duration     time.Duration // how long to start pairs; 0: no cap; idle: how long to hold (required)
	Timeout      time.Duration // bound on one pair's whole run
	MaxErrorRate float64       // the error rate above which the run fails, 0 to 1
}

// Check returns an error, naming the flag, if s cannot make a run (of the
// idle scenario if idle, else of pairs): a negative --pairs or
// --duration, --pairs 0 without a --duration, idle without a --duration
// or with fewer than 1 --connections, --concurrency below 1, a --timeout
// that is not positive, or a --max-error-rate outside 0 to 1. Otherwise it
// lowers Concurrency to what the run can use: at most Connections (idle)
// or Pairs.
func (s *Shape) Check(idle bool) error {
	switch {
	case s.Pairs < 0:
		return fmt.Errorf("--pairs %d: must not be negative", s.Pairs)
	case idle && s.Duration == 0:
		return errors.New("--scenario idle needs a --duration (how long to hold the connections)")
	case idle && s.Connections < 1:
		return fmt.Errorf("--connections %d: must be at least 1", s.Connections)
	case s.Pairs == 0 && s.Duration == 0:
		return errors.New("--pairs 0 needs a --duration")
	case s.Concurrency < 1:
		return fmt.Errorf("--concurrency %d: must be at least 1", s.Concurrency)
	case s.Duration < 0:
		return fmt.Errorf("--duration %v: must not be negative", s.Duration)
	case s.Timeout <= 0:
		return fmt.Errorf("--timeout %v: must be positive", s.Timeout)
	case s.MaxErrorRate < 0 || s.MaxErrorRate > 1:
		return fmt.Errorf("--max-error-rate %v: want a fraction from 0 to 1", s.MaxErrorRate)
	}
	if idle {
		s.Concurrency = min(s.Concurrency, s.Connections)
	} else if s.Pairs > 0 && s.Concurrency > s.Pairs {
		s.Concurrency = s.Pairs
	}
	return nil
}
