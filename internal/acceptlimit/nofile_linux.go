package acceptlimit

import "syscall"

// RaiseFileLimit raises the process's soft limit on open files
// (RLIMIT_NOFILE) to its hard limit, and returns the soft limit before and
// after, and the hard limit. On Linux only; elsewhere it does nothing and
// returns ok false. Go (1.19 and newer) already raises the soft limit when
// a program starts; calling this makes the limit explicit, and works if
// something lowered it since. If the limit cannot be raised, it returns
// the limits as they are and the error.
func RaiseFileLimit() (before, after, hard uint64, ok bool, err error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, 0, false, err
	}
	before = r.Cur
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return before, before, r.Max, true, err
		}
	}
	return before, r.Cur, r.Max, true, nil
}
