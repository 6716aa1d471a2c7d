package traffic

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The SYN's checksum must verify as the receiving stack checks it: the
// ones' complement sum over pseudo-header and segment, checksum included,
// is all ones.
func TestSYNSegment(t *testing.T) {
	for _, tc := range []struct {
		src   string
		dst   string
		sport uint16
		seq   uint32
	}{
		{"10.42.0.10", "10.42.0.12:8080", 1024, 0},
		{"10.42.0.10", "10.42.0.12:8095", 65535, 0xffffffff},
		{"192.168.255.255", "1.2.3.4:1", 40000, 12345},
	} {
		seg := make([]byte, 20)
		src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddrPort(tc.dst)
		synSegment(seg, src, dst, tc.sport, tc.seq)
		assert.Equal(t, tc.sport, binary.BigEndian.Uint16(seg[0:]))
		assert.Equal(t, dst.Port(), binary.BigEndian.Uint16(seg[2:]))
		assert.Equal(t, tc.seq, binary.BigEndian.Uint32(seg[4:]))
		assert.Equal(t, byte(0x02), seg[13], "SYN only")
		s, d := src.As4(), dst.Addr().As4()
		var sum uint32
		for _, w := range [][]byte{s[:], d[:], {0, 6, 0, 20}, seg} {
			for i := 0; i < len(w); i += 2 {
				sum += uint32(binary.BigEndian.Uint16(w[i:]))
			}
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		assert.Equal(t, uint32(0xffff), sum, "checksum of %v", tc)
	}
}
