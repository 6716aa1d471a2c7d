package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// A socket keeps the network namespace it was created in, so each helper only switches namespace
// for socket creation (and, for dials, the connect that follows); the returned socket can then be
// used from any goroutine.

// ListenTCP listens on the pod's IP (all addresses of its namespace) at port.
func (p *Pod) ListenTCP(port int) (net.Listener, error) {
	var ln net.Listener
	err := Do(p.NetNS, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen tcp %d in %s: %w", port, p.Key(), err)
	}
	return ln, nil
}

// ListenUDP binds a UDP socket at port in the pod.
func (p *Pod) ListenUDP(port int) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := Do(p.NetNS, func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %d in %s: %w", port, p.Key(), err)
	}
	return c, nil
}

// DialTCP connects from the pod. A connection REJECTed by policy fails fast with "connection
// refused" (kube-router rejects with ICMP port-unreachable); a timeout means the packet vanished.
func (p *Pod) DialTCP(ctx context.Context, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := Do(p.NetNS, func() error {
		d := net.Dialer{Timeout: timeout}
		var err error
		c, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial tcp %s from %s: %w", dst, p.Key(), err)
	}
	return c, nil
}

// DialUDP returns a UDP socket in the pod connected to dst.
func (p *Pod) DialUDP(dst netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := Do(p.NetNS, func() error {
		var err error
		c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial udp %s from %s: %w", dst, p.Key(), err)
	}
	return c, nil
}

// AddrPort is the pod's IP with port.
func (p *Pod) AddrPort(port int) netip.AddrPort { return netip.AddrPortFrom(p.IP, uint16(port)) }
