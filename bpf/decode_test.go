package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func mapped(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// rawStats lays out FlowStats the way the kernel does (types.h).
func rawStats(s FlowStats) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, s)
	return buf.Bytes()
}

func rawKey(k FlowKey) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, k)
	return buf.Bytes()
}

// The decoders copy bytes into the generated structs: that is only right
// while they have no padding Go added on its own.
func TestGeneratedLayout(t *testing.T) {
	assert.Equal(t, binary.Size(FlowKey{}), int(unsafe.Sizeof(FlowKey{})))
	assert.Equal(t, binary.Size(FlowStats{}), int(unsafe.Sizeof(FlowStats{})))
	assert.Equal(t, binary.Size(DropEvent{}), int(unsafe.Sizeof(DropEvent{})))
}

func TestDecodeFlowKey(t *testing.T) {
	want := FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.43.0.10"), Sport: 40000, Dport: 53, Proto: unix.IPPROTO_UDP, Family: 4}
	raw := rawKey(want)
	require.Len(t, raw, flowKeySize)
	var got FlowKey
	require.NoError(t, DecodeFlowKey(raw, &got))
	assert.Equal(t, want, got)
	src, dst := got.Addrs()
	assert.Equal(t, "10.42.0.10", src.String())
	assert.Equal(t, "10.43.0.10", dst.String())

	enc := make([]byte, flowKeySize)
	encodeFlowKey(&got, enc)
	assert.Equal(t, raw, enc)
}

func TestDecodeFlowStats(t *testing.T) {
	want := FlowStats{FirstNs: 1, LastNs: 2, Pkts: 3, Bytes: 4, FwdPkts: 5, FwdBytes: 6, DropPkts: 7, DropBytes: 8,
		Ifindex: 9, DropIfindex: 10, DropReason: 11, TcpFlags: 0x12, Obs: ObsToPod, IsReply: 1}
	raw := rawStats(want)
	require.Len(t, raw, flowStatsSize)
	var got FlowStats
	require.NoError(t, DecodeFlowStats(raw, &got))
	assert.Equal(t, want, got)
}

func TestDecodeDropEvent(t *testing.T) {
	want := DropEvent{Key: FlowKey{Saddr: mapped("fd00::1"), Daddr: mapped("fd00::2"), Proto: unix.IPPROTO_TCP, Family: 6, Dport: 2,
		Flags: FlowKeyAttempts}, Stats: FlowStats{Pkts: 3, DropPkts: 3, DropBytes: 180, DropReason: 12, DropIfindex: 7}}
	var buf bytes.Buffer
	require.NoError(t, binary.Write(&buf, binary.LittleEndian, want))
	var got DropEvent
	require.NoError(t, DecodeDropEvent(buf.Bytes(), &got))
	assert.Equal(t, want, got)
}

func TestDecodeShort(t *testing.T) {
	tests := []struct {
		name string
		fn   func([]byte) error
		size int
	}{
		{"key", func(b []byte) error { var k FlowKey; return DecodeFlowKey(b, &k) }, flowKeySize},
		{"stats", func(b []byte) error { var s FlowStats; return DecodeFlowStats(b, &s) }, flowStatsSize},
		{"drop event", func(b []byte) error { var e DropEvent; return DecodeDropEvent(b, &e) }, dropEventSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.fn(make([]byte, tt.size-1)), ErrShortRecord)
			assert.ErrorIs(t, tt.fn(nil), ErrShortRecord)
			assert.NoError(t, tt.fn(make([]byte, tt.size)))
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(rawKey(FlowKey{Family: 4, Proto: unix.IPPROTO_TCP}))
	f.Add(rawStats(FlowStats{Pkts: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var k FlowKey
		var s FlowStats
		var e DropEvent
		if DecodeFlowKey(raw, &k) == nil {
			enc := make([]byte, flowKeySize)
			encodeFlowKey(&k, enc)
			if !bytes.Equal(enc, raw[:flowKeySize]) {
				t.Fatalf("key round trip: %x != %x", enc, raw[:flowKeySize])
			}
			k.Addrs()
		}
		if DecodeFlowStats(raw, &s) == nil && len(raw) < flowStatsSize {
			t.Fatal("decoded a short stats record")
		}
		if DecodeDropEvent(raw, &e) == nil && len(raw) < dropEventSize {
			t.Fatal("decoded a short drop event")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	key := rawKey(FlowKey{Saddr: mapped("10.42.0.10"), Daddr: mapped("10.42.0.11"), Sport: 1, Dport: 2, Proto: unix.IPPROTO_TCP, Family: 4})
	val := rawStats(FlowStats{Pkts: 10, Bytes: 1000, LastNs: 5})
	var k FlowKey
	var s FlowStats
	b.ReportAllocs()
	b.SetBytes(int64(len(key) + len(val)))
	for b.Loop() {
		if err := DecodeFlowKey(key, &k); err != nil {
			b.Fatal(err)
		}
		if err := DecodeFlowStats(val, &s); err != nil {
			b.Fatal(err)
		}
	}
}
