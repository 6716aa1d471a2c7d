package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
)

// OutsideServers is the key under which Servers counts UDP datagrams the outside world received:
// UDPReceived(OutsideServers, port).
const OutsideServers = "outside"

// StartExternalServers serves, in the outside namespace, every port an outbound external case
// dials. One socket per port listens on every peer address; a TCP reply names the address that
// was dialled (TCPReply(payload, peer.String())).
func StartExternalServers(l Lab) (*Servers, error) {
	ns := l.ExternalNetNS()
	if ns == "" {
		return nil, fmt.Errorf("start outside servers: the lab has no outside namespace (Config.External)")
	}
	var ports []scenario.Port
	for _, c := range l.ExternalCases() {
		p := scenario.Port{Port: c.Port, Protocol: c.Protocol}
		if !c.Inbound && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	s := &Servers{udp: map[string]*atomic.Int64{}}
	for _, p := range ports {
		if err := s.startOutside(ns, p); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

func (s *Servers) startOutside(ns string, port scenario.Port) error {
	if port.Protocol == "UDP" {
		var c *net.UDPConn
		err := netns.Do(ns, func() error {
			var err error
			c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port.Port})
			return err
		})
		if err != nil {
			return fmt.Errorf("listen udp %d in %s: %w", port.Port, ns, err)
		}
		s.countUDP(fmt.Sprintf("%s:%d", OutsideServers, port.Port), c)
		return nil
	}
	var ln net.Listener
	err := netns.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port.Port))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen tcp %d in %s: %w", port.Port, ns, err)
	}
	s.closers = append(s.closers, ln)
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			s.wg.Go(func() { serveTCP(c, local.String()) })
		}
	})
	return nil
}

// ExternalResult is one attempt of a scenario.ExternalCase.
type ExternalResult struct {
	Case    scenario.ExternalCase
	Allowed bool
	// Src and Dst are the connection's forward direction as the pod's veth sees it (the pod's
	// address, before the node masquerades it).
	Src, Dst netip.AddrPort
	Detail   string
	Err      error
}

// OK reports whether the attempt matched the case's expectation.
func (r ExternalResult) OK() bool { return r.Allowed == r.Case.Allowed }

// RunExternalCase runs c once from source port sport (0: any). TCP: allowed when the full reply
// comes back; UDP: allowed when the receiving server counted a datagram. pods are the lab's pod
// servers (for inbound cases), outside its outside servers (for outbound ones).
func RunExternalCase(ctx context.Context, l Lab, pods, outside *Servers, c scenario.ExternalCase, sport int) ExternalResult {
	res := ExternalResult{Case: c}
	ns := l.ExternalNetNS()
	p := l.Pod(c.Pod)
	if ns == "" || p == nil {
		res.Err = fmt.Errorf("case %s: no outside namespace or no pod %s", c.Name, c.Pod)
		return res
	}
	fromNS, src, dst, served, rcv := p.NetNS, netip.AddrPortFrom(p.IP, uint16(sport)), netip.AddrPortFrom(c.Peer, uint16(c.Port)), c.Peer.String(), outside
	udpKey := OutsideServers
	if c.Inbound {
		fromNS, src, dst, served, rcv = ns, netip.AddrPortFrom(c.Peer, uint16(sport)), p.AddrPort(c.Port), c.Pod, pods
		udpKey = c.Pod
	}
	res.Src, res.Dst = src, dst
	if c.Protocol == "UDP" {
		if rcv == nil {
			res.Err = fmt.Errorf("case %s: no servers for the receiving end", c.Name)
			return res
		}
		before := rcv.UDPReceived(udpKey, c.Port)
		conn, err := dialFrom(ctx, fromNS, "udp4", src, dst)
		if err != nil {
			res.Err = err
			return res
		}
		defer conn.Close()
		var sendErr error
		for i := range 3 {
			// After a REJECT the socket reports ECONNREFUSED on a later send: that is a result.
			if _, err := fmt.Fprintf(conn, "flowlens-lab %d", i); err != nil {
				sendErr = err
			}
			time.Sleep(5 * time.Millisecond)
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) && rcv.UDPReceived(udpKey, c.Port) == before {
			time.Sleep(10 * time.Millisecond)
		}
		got := rcv.UDPReceived(udpKey, c.Port) - before
		res.Allowed = got > 0
		res.Detail = fmt.Sprintf("%d datagrams received, send error %v", got, sendErr)
		return res
	}
	conn, err := dialFrom(ctx, fromNS, "tcp4", src, dst)
	if err != nil {
		res.Err = err
		res.Detail = err.Error()
		return res
	}
	defer conn.Close()
	if sport == 0 {
		res.Src = conn.LocalAddr().(*net.TCPAddr).AddrPort()
		res.Src = netip.AddrPortFrom(res.Src.Addr().Unmap(), res.Src.Port())
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	payload := strings.Repeat("flowlens-lab ", 100)
	_, err = io.WriteString(conn, payload)
	if err == nil {
		err = conn.(*net.TCPConn).CloseWrite()
	}
	var reply []byte
	if err == nil {
		reply, err = io.ReadAll(conn)
	}
	res.Err = err
	res.Allowed = err == nil && string(reply) == TCPReply([]byte(payload), served)
	res.Detail = fmt.Sprintf("reply %q err %v", reply, err)
	return res
}

// dialFrom connects from local (port 0: any) inside namespace ns. A REJECT fails fast with
// "connection refused"; a timeout means the packet vanished.
func dialFrom(ctx context.Context, ns, network string, local, dst netip.AddrPort) (net.Conn, error) {
	var la net.Addr
	if network == "udp4" {
		la = net.UDPAddrFromAddrPort(local)
	} else {
		la = net.TCPAddrFromAddrPort(local)
	}
	var c net.Conn
	err := netns.Do(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: la}
		var err error
		c, err = d.DialContext(ctx, network, dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s in %s: %w", network, dst, local, ns, err)
	}
	return c, nil
}
