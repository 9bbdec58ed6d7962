package cachelib

import (
	"encoding/hex"
	"testing"
)

// pickle.dumps(n, proto) as CPython writes it.
var pickledInts = []struct {
	n     int64
	proto byte
	hex   string
}{
	{0, 2, "80024b002e"},
	{26, 2, "80024b1a2e"},
	{26, 5, "80054b1a2e"},
	{255, 4, "80044bff2e"},
	{256, 4, "80049504000000000000004d00012e"},
	{65536, 3, "80034a000001002e"},
	{65536, 4, "80049506000000000000004a000001002e"},
	{200000, 5, "80059506000000000000004a400d03002e"},
	{1 << 31, 2, "80028a0500000080002e"},
	{1 << 31, 5, "80059508000000000000008a0500000080002e"},
	{1<<63 - 1, 5, "8005950b000000000000008a08ffffffffffffff7f2e"},
}

func TestPickleInt(t *testing.T) {
	for _, c := range pickledInts {
		got := PickleInt(c.n, c.proto)
		if hex.EncodeToString(got) != c.hex {
			t.Errorf("PickleInt(%d, %d) = %x, python writes %s", c.n, c.proto, got, c.hex)
		}
		back, ok := UnpickleInt(got)
		if !ok || back != c.n {
			t.Errorf("UnpickleInt(%x) = %d, %v", got, back, ok)
		}
	}
}

func TestUnpickleIntRejects(t *testing.T) {
	for _, b := range []string{"", "8005", "80054b1a", "80054e2e", "4b1a2e", "8005950400", "80058a09000000000000000000002e", "80058a01802e"} {
		raw, _ := hex.DecodeString(b)
		if n, ok := UnpickleInt(raw); ok {
			t.Errorf("UnpickleInt(%s) = %d, want rejected", b, n)
		}
	}
}

// Count files as cachelib writes them: a never-expiring header in either
// layout, then the pickled int; and what it never writes.
func TestParseCountFile(t *testing.T) {
	for _, c := range []struct {
		name string
		file string
		want CountFile
		ok   bool
	}{
		{"cachelib >= 0.7, protocol 5", structHeader(0) + "80054b1a2e", CountFile{FormatStruct, 5, 26, true}, true},
		{"cachelib >= 0.7, large", structHeader(0) + "80059506000000000000004a400d03002e", CountFile{FormatStruct, 5, 200000, true}, true},
		{"cachelib < 0.7, python 2", "4b002e" + "80024b632e", CountFile{FormatPickle, 2, 99, true}, true},
		{"header with no int after the PROTO", structHeader(1) + "80057d942e", CountFile{FormatStruct, 5, 0, false}, true},
		{"no header", "80054b1a2e", CountFile{}, false},
		{"empty", "", CountFile{}, false},
	} {
		b, _ := hex.DecodeString(c.file)
		got, ok := ParseCountFile(b)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: %+v %v, want %+v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// Written back in the layout read, the count file is byte for byte what
// cachelib writes.
func TestCountFileBytes(t *testing.T) {
	for _, c := range []struct {
		cf    CountFile
		count int64
		want  string
	}{
		{CountFile{Format: FormatStruct, Proto: 5}, 26, structHeader(0) + "80054b1a2e"},
		{CountFile{Format: FormatPickle, Proto: 2}, 6, "4b002e" + "80024b062e"},
	} {
		if got := hex.EncodeToString(c.cf.Bytes(c.count)); got != c.want {
			t.Errorf("%+v.Bytes(%d) = %s, want %s", c.cf, c.count, got, c.want)
		}
	}
}
