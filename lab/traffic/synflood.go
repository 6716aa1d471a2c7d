package traffic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/lab/netns"
)

// SYNFlood sends TCP SYNs from a pod's namespace at a fixed rate, each
// from the next source port, the way a client retrying against a REJECT
// rule (or a scanner) looks to the datapath: every SYN a new flow. It
// writes the TCP header on raw sockets and lets the kernel add the IP
// header, so the packets carry the pod's real address and route.
type SYNFlood struct {
	From Endpoint
	// To is the first destination port; Ports > 1 spreads the SYNs over
	// that many ports from there, so that more SYNs than there are source
	// ports are still each a flow of its own.
	To       netip.AddrPort
	Ports    int
	Rate     int // SYNs per second, all senders together
	Duration time.Duration
	// SourcePorts is how many source ports the SYNs cycle through, from
	// 1024 (0: all 64,512 of them). 1 is one client retrying its SYN.
	SourcePorts int
	// Senders share the rate, each on its own socket and goroutine (0: one),
	// so that the flood is not bound to one core.
	Senders int
}

// sourcePorts is how many source ports the flood cycles through by default.
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
	senders := max(f.Senders, 1)
	fds := make([]int, 0, senders)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range senders {
		var fd int
		err := netns.Do(f.From.NetNS, func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("raw socket in %s: %w", f.From.NetNS, err)
		}
		fds = append(fds, fd)
	}
	start := time.Now()
	results := make([]FloodResult, senders)
	var g errgroup.Group
	for i, fd := range fds {
		g.Go(func() error { return f.send(ctx, fd, i, senders, start, &results[i]) })
	}
	err := g.Wait()
	for _, r := range results {
		res.Sent += r.Sent
		res.Refused += r.Refused
	}
	res.Elapsed = time.Since(start)
	return res, err
}

// send is one sender's loop: SYN numbers i, i+of, i+2*of, ... at Rate/of.
func (f SYNFlood) send(ctx context.Context, fd, i, of int, start time.Time, res *FloodResult) error {
	to := &unix.SockaddrInet4{Addr: f.To.Addr().As4()}
	seg := make([]byte, 20)
	ports, sports := max(f.Ports, 1), f.SourcePorts
	if sports <= 0 || sports > sourcePorts {
		sports = sourcePorts
	}
	rate := float64(f.Rate) / float64(of)
	end := start.Add(f.Duration)
	for n := i; ; {
		now := time.Now()
		if now.After(end) || ctx.Err() != nil {
			return nil
		}
		// Send what the rate owes so far (at most a millisecond's worth
		// when the machine cannot keep up), then yield a little.
		owed := int64(now.Sub(start).Seconds()*rate) - int64(res.Sent+res.Refused)
		for range min(max(owed, 0), int64(rate/1000+1)) {
			dst := netip.AddrPortFrom(f.To.Addr(), f.To.Port()+uint16(n/sports%ports))
			synSegment(seg, f.From.IP, dst, uint16(1024+n%sports), uint32(n))
			n += of
			if err := unix.Sendto(fd, seg, unix.MSG_DONTWAIT, to); err != nil {
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
					res.Refused++
					continue
				}
				return fmt.Errorf("send syn: %w", err)
			}
			res.Sent++
		}
		time.Sleep(200 * time.Microsecond)
	}
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
