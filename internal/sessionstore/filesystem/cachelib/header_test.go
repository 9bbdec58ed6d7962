package cachelib

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"testing"
	"time"
)

// value is pickle.dumps({}, 5), a value as cachelib writes it after the
// header.
const value = "80057d942e"

func structHeader(expires uint32) string {
	return hex.EncodeToString(binary.NativeEndian.AppendUint32(nil, expires))
}

// Headers as Python writes them (pickle.dumps(x, 1) for cachelib < 0.7,
// struct.pack("I", x) since), each followed by a value, read at a cut-off of
// 1,700,000,000 (inclusive: cachelib serves a file while expires >= now).
func TestClassify(t *testing.T) {
	cutoff := time.Unix(1_700_000_000, 0)
	for _, c := range []struct {
		name   string
		file   string // hex
		state  State
		format Format
	}{
		{"struct, never", structHeader(0) + value, Never, FormatStruct},
		{"struct, past", structHeader(1_699_999_999) + value, Expired, FormatStruct},
		{"struct, at the cut-off", structHeader(1_700_000_000) + value, Live, FormatStruct},
		{"struct, future", structHeader(1_700_000_001) + value, Live, FormatStruct},
		{"struct, 2106", structHeader(0xffffffff) + value, Live, FormatStruct},
		{"pickle BININT1 0", "4b002e" + value, Never, FormatPickle},
		{"pickle BININT1 255", "4bff2e" + value, Expired, FormatPickle},
		{"pickle BININT2 (also a struct header, agreeing)", "4d00012e" + value, Expired, FormatStruct},
		{"pickle BININT at the cut-off", "4a00f153652e" + value, Live, FormatPickle},
		{"pickle BININT max", "4affffff7f2e" + value, Live, FormatPickle},
		{"pickle BININT -1", "4affffffff2e" + value, Expired, FormatPickle},
		{"pickle LONG 2**31", "4c323134373438333634384c0a2e" + value, Live, FormatPickle},
		{"pickle LONG 2**40", "4c313039393531313632373737364c0a2e" + value, Live, FormatPickle},
		{"pickle BINFLOAT 1700000000.5", "4741d954fc402000002e" + value, Live, FormatPickle},
		{"pickle BINFLOAT 0.0", "4700000000000000002e" + value, Never, FormatPickle},
		{"python 2 INT", hex.EncodeToString([]byte("I1699999999\n.")) + value, Expired, FormatPickle},
		{"python 2 LONG", hex.EncodeToString([]byte("L1700000001L\n.")) + value, Live, FormatPickle},
		{"pickle NaN", "477ff80000000000002e" + value, Unreadable, FormatNone},
		{"pickle None", "4e2e" + value, Unreadable, FormatNone},
		{"no STOP", "4a00f15365" + value, Unreadable, FormatNone},
		{"LONG out of range", hex.EncodeToString([]byte("L99999999999999999999999L\n.")) + value, Unreadable, FormatNone},
		{"value of protocol 1", structHeader(1) + "7d2e", Unreadable, FormatNone},
		{"empty", "", Unreadable, FormatNone},
		{"header only", structHeader(1), Unreadable, FormatNone},
		{"header and PROTO only", structHeader(1) + "80", Unreadable, FormatNone},
	} {
		b, err := hex.DecodeString(c.file)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		state, format := Classify(b, cutoff)
		if state != c.state || format != c.format {
			t.Errorf("%s (%s): %v %v, want %v %v", c.name, c.file, state, format, c.state, c.format)
		}
	}
}

// A second past the cut-off, by a nanosecond, is expired.
func TestExpiryStateAtFractions(t *testing.T) {
	cutoff := time.Unix(1_700_000_000, 1)
	for _, c := range []struct {
		e    Expiry
		want State
	}{
		{Expiry{Seconds: 1_700_000_000}, Expired},
		{Expiry{Seconds: 1_700_000_001}, Live},
		{Expiry{IsFloat: true, Float: 1_700_000_000.5}, Live},
		{Expiry{IsFloat: true, Float: 1_699_999_999.5}, Expired},
		{Expiry{IsFloat: true, Float: 0}, Never},
	} {
		if got := c.e.State(cutoff); got != c.want {
			t.Errorf("%+v: %v, want %v", c.e, got, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{
		{"2029240f6d1128be89ddc32729463129", true},                                 // md5
		{"da39a3ee5e6b4b0d3255bfef95601890afd80709", true},                         // sha1
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", true}, // sha256
		{"2029240F6D1128BE89DDC32729463129", false},
		{"2029240f6d1128be89ddc3272946312", false},
		{"2029240f6d1128be89ddc32729463129.__wz_cache", false},
		{"g029240f6d1128be89ddc32729463129", false},
		{"", false},
	} {
		if got := IsEntryName(c.name); got != c.want {
			t.Errorf("IsEntryName(%q) = %v", c.name, got)
		}
	}
	// hashlib.md5(b"__wz_cache_count").hexdigest() and sha256's.
	for _, want := range []string{"2029240f6d1128be89ddc32729463129", "79bc207ee04a581ab2348ca1f3494e64cd0ec36128735b8c6bc85ddd8fe1938c"} {
		if !IsCountFile(want) || !IsEntryName(want) {
			t.Errorf("%s is not known as a count file", want)
		}
	}
	if CountFiles[0] != "2029240f6d1128be89ddc32729463129" || CountFiles[3] != "79bc207ee04a581ab2348ca1f3494e64cd0ec36128735b8c6bc85ddd8fe1938c" {
		t.Errorf("count files %v", CountFiles)
	}
}

// A float header whose bytes also read as a 4-byte header: the two
// disagree (the float is in the future, the 4 bytes in 2015), so the file
// is unreadable rather than judged by either.
func TestClassifyAmbiguousFloat(t *testing.T) {
	float := []byte{'G'}
	float = binary.BigEndian.AppendUint64(float, math.Float64bits(1_700_000_000+30*86400))
	float[4], float[5] = 0x80, 5 // make bytes 4 and 5 look like PROTO 5
	f := math.Float64frombits(binary.BigEndian.Uint64(float[1:]))
	float = append(float, '.', 0x80, 5, '}', '.')
	if f < 1_700_000_000 || f > 1_800_000_000 {
		t.Fatalf("test setup: float %v is not a plausible future time", f)
	}
	if state, _ := Classify(float, time.Unix(1_700_000_000, 0)); state != Unreadable {
		t.Errorf("ambiguous float header %x reads as %v, want unreadable", float, state)
	}
}
