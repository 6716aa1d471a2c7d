package traffic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/lab/netns"
)

// SYNFlood sends TCP SYNs from a pod's namespace at a fixed rate, each
// from the next source port, the way a client retrying against a REJECT
// rule (or a scanner) looks to the datapath: every SYN a new flow. It
// writes the TCP header on a raw socket and lets the kernel add the IP
// header, so the packets carry the pod's real address and route.
type SYNFlood struct {
	From Endpoint
	// To is the first destination port; Ports > 1 spreads the SYNs over
	// that many ports from there, so that more SYNs than there are source
	// ports are still each a flow of its own.
	To       netip.AddrPort
	Ports    int
	Rate     int // SYNs per second
	Duration time.Duration
}

// sourcePorts is how many source ports the flood cycles through.
const sourcePorts = 65536 - 1024

// FloodResult is what a flood sent.
type FloodResult struct {
	Sent    uint64
	Elapsed time.Duration
	// Refused counts sends the local stack refused (a full queue): those
	// SYNs never left and are not in Sent.
	Refused uint64
}

// Run floods until Duration has passed or ctx ends.
func (f SYNFlood) Run(ctx context.Context) (FloodResult, error) {
	var res FloodResult
	if !f.From.IP.Is4() || !f.To.Addr().Is4() {
		return res, errors.New("syn flood: IPv4 only")
	}
	var fd int
	err := netns.Do(f.From.NetNS, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("raw socket in %s: %w", f.From.NetNS, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: f.To.Addr().As4()}
	seg := make([]byte, 20)
	ports := max(f.Ports, 1)
	start := time.Now()
	end := start.Add(f.Duration)
	for n := 0; ; {
		now := time.Now()
		if now.After(end) || ctx.Err() != nil {
			break
		}
		// Send what the rate owes so far (at most a millisecond's worth
		// when the machine cannot keep up), then yield a little.
		owed := int64(now.Sub(start).Seconds()*float64(f.Rate)) - int64(res.Sent+res.Refused)
		for range min(max(owed, 0), int64(f.Rate/1000+1)) {
			dst := netip.AddrPortFrom(f.To.Addr(), f.To.Port()+uint16(n/sourcePorts%ports))
			synSegment(seg, f.From.IP, dst, uint16(1024+n%sourcePorts), uint32(n))
			n++
			if err := unix.Sendto(fd, seg, unix.MSG_DONTWAIT, to); err != nil {
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
					res.Refused++
					continue
				}
				return res, fmt.Errorf("send syn: %w", err)
			}
			res.Sent++
		}
		time.Sleep(200 * time.Microsecond)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// synSegment writes a 20-byte TCP SYN with its checksum into seg.
func synSegment(seg []byte, src netip.Addr, dst netip.AddrPort, sport uint16, seq uint32) {
	clear(seg)
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], seq)
	seg[12] = 5 << 4 // data offset: 5 words
	seg[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(seg[14:], 64240)
	s, d := src.As4(), dst.Addr().As4()
	var sum uint32
	for _, w := range [][]byte{s[:], d[:], {0, unix.IPPROTO_TCP, 0, byte(len(seg))}, seg} {
		for i := 0; i+1 < len(w); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(w[i:]))
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(seg[16:], ^uint16(sum))
}
