package cachelib

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"time"
)

// HeaderBytes covers every header form (the longest, a pickled LONG of a
// 64-bit number, is 25 bytes) and the start of the value after it.
const HeaderBytes = 64

// State is what a file's header says at a given cut-off.
type State int

const (
	Unreadable State = iota
	Live
	Expired
	Never
)

func (s State) String() string {
	return [...]string{"unreadable", "live", "expired", "never"}[s]
}

// Format is the layout of a file's header.
type Format int

const (
	FormatNone   Format = iota
	FormatStruct        // cachelib >= 0.7: struct.pack("I", expires)
	FormatPickle        // cachelib < 0.7, werkzeug: pickle.dump(expires, f, 1)
)

// Expiry is an expiry read from a header: an int, or a float in some
// hand-made files of cachelib < 0.7 (pickle keeps the type it is given).
type Expiry struct {
	IsFloat bool
	Seconds int64
	Float   float64
}

// State follows cachelib's get(): a file is served while expires == 0 or
// expires >= time(), so it is expired once its expiry is strictly before
// cutoff (at the very second of its expiry the app would still read it).
func (e Expiry) State(cutoff time.Time) State {
	if e.IsFloat {
		switch {
		case e.Float == 0:
			return Never
		case e.Float < float64(cutoff.Unix())+float64(cutoff.Nanosecond())/1e9:
			return Expired
		}
		return Live
	}
	switch {
	case e.Seconds == 0:
		return Never
	case e.Seconds < cutoff.Unix(), e.Seconds == cutoff.Unix() && cutoff.Nanosecond() > 0:
		return Expired
	}
	return Live
}

// Classify reads a file's header in either layout. The first bytes of a
// 4-byte header can look like a pickle (they are any number), so each
// layout is accepted only when the value's pickle (PROTO 2 or more) starts
// right after it; when both layouts fit and disagree, the file is unreadable.
func Classify(b []byte, cutoff time.Time) (State, Format) {
	structExp, structOK := ParseStructHeader(b)
	pickleExp, _, pickleOK := ParsePickleHeader(b)
	switch {
	case structOK && pickleOK:
		state := structExp.State(cutoff)
		if state != pickleExp.State(cutoff) {
			return Unreadable, FormatNone
		}
		return state, FormatStruct
	case structOK:
		return structExp.State(cutoff), FormatStruct
	case pickleOK:
		return pickleExp.State(cutoff), FormatPickle
	}
	return Unreadable, FormatNone
}

// ParseStructHeader reads cachelib >= 0.7's struct.pack("I", expires).
func ParseStructHeader(b []byte) (Expiry, bool) {
	if len(b) < 4 || !valueFollows(b[4:]) {
		return Expiry{}, false
	}
	return Expiry{Seconds: int64(binary.NativeEndian.Uint32(b))}, true
}

// ParsePickleHeader reads pickle.dump(expires, f, 1): BININT1 (K), BININT2
// (M), BININT (J), BINFLOAT (G), and the text forms LONG (L, Python 3 and
// Python 2 longs) and INT (I, Python 2 ints beyond 32 bits), each followed
// by STOP. It returns the header's length.
func ParsePickleHeader(b []byte) (Expiry, int, bool) {
	e, n, ok := parsePickleNumber(b)
	if !ok || len(b) <= n || b[n] != pickleStop || !valueFollows(b[n+1:]) {
		return Expiry{}, 0, false
	}
	return e, n + 1, true
}

// parsePickleNumber reads one protocol-1 number opcode and returns it with
// its length.
func parsePickleNumber(b []byte) (Expiry, int, bool) {
	if len(b) == 0 {
		return Expiry{}, 0, false
	}
	switch op := b[0]; {
	case op == 'K' && len(b) >= 2:
		return Expiry{Seconds: int64(b[1])}, 2, true
	case op == 'M' && len(b) >= 3:
		return Expiry{Seconds: int64(binary.LittleEndian.Uint16(b[1:]))}, 3, true
	case op == 'J' && len(b) >= 5:
		return Expiry{Seconds: int64(int32(binary.LittleEndian.Uint32(b[1:])))}, 5, true
	case op == 'G' && len(b) >= 9:
		f := math.Float64frombits(binary.BigEndian.Uint64(b[1:]))
		return Expiry{IsFloat: true, Float: f}, 9, !math.IsNaN(f)
	case op == 'L' || op == 'I':
		return parsePickleText(b)
	}
	return Expiry{}, 0, false
}

// parsePickleText reads LONG and INT: digits up to a newline, LONG's with
// Python 2's trailing L.
func parsePickleText(b []byte) (Expiry, int, bool) {
	end := strings.IndexByte(string(b[1:min(len(b), 32)]), '\n')
	if end < 0 {
		return Expiry{}, 0, false
	}
	digits := string(b[1 : 1+end])
	if b[0] == 'L' {
		digits = strings.TrimSuffix(digits, "L")
	}
	if digits == "" || digits[0] == '+' {
		return Expiry{}, 0, false
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return Expiry{}, 0, false
	}
	return Expiry{Seconds: v}, 2 + end, true
}

// valueFollows tells whether b starts a pickle of protocol 2 or more, as
// cachelib and werkzeug write values (pickle.HIGHEST_PROTOCOL).
func valueFollows(b []byte) bool {
	return len(b) >= 2 && b[0] == pickleProto && b[1] >= 2 && b[1] <= 15
}
