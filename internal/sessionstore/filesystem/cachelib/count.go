package cachelib

import (
	"encoding/binary"
	"math"
)

// CountFileMax bounds a read of the count file (about 20 bytes).
const CountFileMax = 4096

// Python's pickle opcodes used here.
const (
	pickleProto = 0x80
	pickleFrame = 0x95
	pickleLong1 = 0x8a
	pickleStop  = '.'
)

// CountFile is what a count file holds.
type CountFile struct {
	// Format is its header's layout, Proto its int's pickle protocol.
	Format Format
	Proto  byte
	// Count is the count; Known is false when the int is not one PickleInt
	// writes.
	Count int64
	Known bool
}

// ParseCountFile reads a count file; ok is false when it is in neither of
// cachelib's layouts.
func ParseCountFile(b []byte) (c CountFile, ok bool) {
	n := 0
	if _, structOK := ParseStructHeader(b); structOK {
		c.Format, n = FormatStruct, 4
	} else if _, pickleLen, pickleOK := ParsePickleHeader(b); pickleOK {
		c.Format, n = FormatPickle, pickleLen
	} else {
		return CountFile{}, false
	}
	// Both parsers checked that a PROTO opcode follows.
	c.Proto = b[n+1]
	c.Count, c.Known = UnpickleInt(b[n:])
	return c, true
}

// Bytes is the count file holding count in c's layout and protocol.
func (c CountFile) Bytes(count int64) []byte {
	return append(CountHeader(c.Format), PickleInt(count, c.Proto)...)
}

// CountHeader is the header cachelib gives its count file: 0, never
// expires, in the layout of the given version.
func CountHeader(format Format) []byte {
	if format == FormatPickle {
		return []byte{'K', 0, pickleStop} // pickle.dumps(0, 1)
	}
	return binary.NativeEndian.AppendUint32(nil, 0) // struct.pack("I", 0)
}

// PickleInt returns pickle.dumps(n, proto) for n >= 0 and proto >= 2, byte
// for byte as CPython writes it: the smallest integer opcode, and from
// protocol 4 on a FRAME around bodies of 4 bytes or more.
func PickleInt(n int64, proto byte) []byte {
	body := append(pickleIntBody(n), pickleStop)
	out := []byte{pickleProto, proto}
	if proto >= 4 && len(body) >= 4 {
		out = append(out, pickleFrame)
		out = binary.LittleEndian.AppendUint64(out, uint64(len(body)))
	}
	return append(out, body...)
}

func pickleIntBody(n int64) []byte {
	switch {
	case n <= 0xff:
		return []byte{'K', byte(n)}
	case n <= 0xffff:
		return binary.LittleEndian.AppendUint16([]byte{'M'}, uint16(n))
	case n <= math.MaxInt32:
		return binary.LittleEndian.AppendUint32([]byte{'J'}, uint32(n))
	}
	digits := binary.LittleEndian.AppendUint64(nil, uint64(n))
	for len(digits) > 1 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	if digits[len(digits)-1]&0x80 != 0 {
		digits = append(digits, 0)
	}
	return append([]byte{pickleLong1, byte(len(digits))}, digits...)
}

// UnpickleInt reads what PickleInt writes.
func UnpickleInt(b []byte) (int64, bool) {
	if len(b) < 3 || b[0] != pickleProto {
		return 0, false
	}
	b = b[2:]
	if b[0] == pickleFrame {
		if len(b) < 10 {
			return 0, false
		}
		b = b[9:]
	}
	v, n, ok := unpickleIntBody(b)
	if !ok || len(b) <= n || b[n] != pickleStop {
		return 0, false
	}
	return v, true
}

func unpickleIntBody(b []byte) (int64, int, bool) {
	switch {
	case len(b) >= 2 && b[0] == 'K':
		return int64(b[1]), 2, true
	case len(b) >= 3 && b[0] == 'M':
		return int64(binary.LittleEndian.Uint16(b[1:])), 3, true
	case len(b) >= 5 && b[0] == 'J':
		return int64(int32(binary.LittleEndian.Uint32(b[1:]))), 5, true
	case len(b) >= 2 && b[0] == pickleLong1:
		size := int(b[1])
		if size < 1 || size > 8 || len(b) < 2+size || b[1+size]&0x80 != 0 {
			return 0, 0, false
		}
		var digits [8]byte
		copy(digits[:], b[2:2+size])
		return int64(binary.LittleEndian.Uint64(digits[:])), 2 + size, true
	}
	return 0, 0, false
}
