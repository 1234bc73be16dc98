package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Timing of one administrative command (command).
const (
	dialTimeout    = time.Second
	commandTimeout = 2 * time.Second
)

// command sends one command to addr on a new connection and returns the
// reply, decoded from RESP2: a simple or bulk string as a string, an
// integer as an int64, an array as a []any of these, a null as nil. An
// error reply is returned as an error, as are a refused connection and a
// timeout, and so is an array that holds an error reply (only EXEC's can,
// and this package sends no EXEC).
//
// It is what the package's own waits and checks use, so that they depend
// on no Redis client (and on none of the bugs of the one under test).
func command(addr string, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(commandTimeout))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

// maxArray bounds the length of an array reply that readReply accepts.
const maxArray = 1 << 20

// readReply reads one RESP2 reply from r; see command.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		n, err := strconv.ParseInt(line[1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unexpected reply %q", line)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 {
			return nil, fmt.Errorf("unexpected reply %q", line)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > maxArray {
			return nil, fmt.Errorf("unexpected reply %q", line)
		}
		if n == -1 {
			return nil, nil
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = readReply(r); err != nil {
				return nil, err // also an error inside an array (EXEC's)
			}
		}
		return a, nil
	default:
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
}
