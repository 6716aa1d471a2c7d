package traffic

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlens/flowlens/lab/scenario"
)

// Lab is the running lab as scenario traffic needs it (*lab.Lab): its pods,
// its scenario's cases and services, and the outside world's namespace.
type Lab interface {
	Scenario() *scenario.Scenario
	Pods() []*scenario.Pod
	Pod(key string) *scenario.Pod
	ExternalNetNS() string
	ExternalCases() []scenario.ExternalCase
}

// Servers answers on every port the scenario's pods declare or listen on: TCP servers read until
// the client half-closes and reply "ok <n>\n"; UDP servers count datagrams.
type Servers struct {
	closers []io.Closer
	wg      sync.WaitGroup
	udp     map[string]*atomic.Int64 // "ns/pod:port" -> datagrams received
}

// UDPReceived is how many datagrams the UDP server of pod ("ns/name") at port has received.
func (s *Servers) UDPReceived(pod string, port int) int64 {
	if c, ok := s.udp[fmt.Sprintf("%s:%d", pod, port)]; ok {
		return c.Load()
	}
	return 0
}

// Close stops every server and waits for their goroutines.
func (s *Servers) Close() error {
	var errs []error
	for _, c := range s.closers {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// StartServers starts the scenario's servers in its pods.
func StartServers(l Lab) (*Servers, error) {
	s := &Servers{udp: map[string]*atomic.Int64{}}
	for _, p := range l.Pods() {
		for _, port := range append(append([]scenario.Port(nil), p.Spec.Ports...), p.Spec.Listen...) {
			if err := s.start(p, port); err != nil {
				return nil, errors.Join(err, s.Close())
			}
		}
	}
	return s, nil
}

func (s *Servers) start(p *scenario.Pod, port scenario.Port) error {
	if port.Protocol == "UDP" {
		c, err := p.ListenUDP(port.Port)
		if err != nil {
			return err
		}
		s.countUDP(fmt.Sprintf("%s:%d", p.Key(), port.Port), c)
		return nil
	}
	ln, err := p.ListenTCP(port.Port)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, ln)
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { serveTCP(c, p.Key()) })
		}
	})
	return nil
}

// countUDP counts the datagrams arriving on c under key until c is closed.
func (s *Servers) countUDP(key string, c *net.UDPConn) {
	n := &atomic.Int64{}
	s.udp[key] = n
	s.closers = append(s.closers, c)
	s.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				return
			}
			n.Add(1)
		}
	})
}

// serveTCP names the serving pod in its reply, so a client of a ClusterIP learns which backend
// it reached, and the SHA-256 of what it received, so a client can check that every byte
// arrived intact.
func serveTCP(c net.Conn, pod string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, _ := io.Copy(h, c)
	fmt.Fprintf(c, "ok %d %s %x\n", n, pod, h.Sum(nil))
}

// TCPReply is what the lab's TCP servers answer after the client half-closes.
func TCPReply(payload []byte, pod string) string {
	return fmt.Sprintf("ok %d %s %x\n", len(payload), pod, sha256.Sum256(payload))
}

// Result is the outcome of one traffic case attempt.
type Result struct {
	Case    scenario.Case
	Allowed bool
	Sent    int64 // bytes (TCP) or datagrams (UDP)
	Got     int64 // bytes of the reply (TCP) or datagrams received (UDP)
	// ServedBy is the pod ("ns/name") that answered an allowed TCP case, e.g. the backend a
	// ClusterIP picked.
	ServedBy string
	Err      error
}

// OK reports whether the attempt matched the case's expectation.
func (r Result) OK() bool { return r.Allowed == r.Case.Allowed }

// RunCase runs one case once: TCP sends a payload and reads the reply; UDP sends Count datagrams
// and reads how many arrived. servers must be the lab's running servers.
func RunCase(ctx context.Context, l Lab, s *Servers, c scenario.Case) Result {
	res := Result{Case: c}
	from := l.Pod(c.From)
	if from == nil {
		res.Err = fmt.Errorf("case %s: no pod %s", c.Name, c.From)
		return res
	}
	dst, err := caseDst(l, c)
	if err != nil {
		res.Err = err
		return res
	}
	if c.Protocol == "UDP" {
		return runUDP(l, from, dst, s, c)
	}
	conn, err := from.DialTCP(ctx, dst, 2*time.Second)
	if err != nil {
		res.Err = err
		return res
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	payload := strings.Repeat("flowlens-lab ", 1000)
	n, err := io.WriteString(conn, payload)
	res.Sent = int64(n)
	if err == nil {
		err = conn.(*net.TCPConn).CloseWrite()
	}
	if err != nil {
		res.Err = err
		return res
	}
	reply, err := io.ReadAll(conn)
	res.Got = int64(len(reply))
	if err != nil {
		res.Err = err
		return res
	}
	res.Allowed = strings.HasPrefix(string(reply), fmt.Sprintf("ok %d ", n))
	if f := strings.Fields(string(reply)); res.Allowed && len(f) >= 3 {
		res.ServedBy = f[2]
	}
	return res
}

func runUDP(l Lab, from *scenario.Pod, dst netip.AddrPort, s *Servers, c scenario.Case) Result {
	res := Result{Case: c}
	count := max(c.Count, 1)
	to := l.Pod(c.To)
	var before int64
	if to != nil {
		before = s.UDPReceived(c.To, c.Port)
	}
	conn, err := from.DialUDP(dst)
	if err != nil {
		res.Err = err
		return res
	}
	defer conn.Close()
	for i := range count {
		if _, err := fmt.Fprintf(conn, "flowlens-lab %d", i); err != nil {
			// A REJECT's ICMP port-unreachable surfaces as ECONNREFUSED on a later send.
			res.Err = err
			break
		}
		res.Sent++
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for to != nil && time.Now().Before(deadline) && s.UDPReceived(c.To, c.Port)-before < res.Sent {
		time.Sleep(10 * time.Millisecond)
	}
	if to != nil {
		res.Got = s.UDPReceived(c.To, c.Port) - before
	}
	res.Allowed = res.Got > 0
	return res
}

func caseDst(l Lab, c scenario.Case) (netip.AddrPort, error) {
	if c.Service != "" {
		for _, svc := range l.Scenario().Services {
			if svc.Namespace+"/"+svc.Name == c.Service {
				return netip.AddrPortFrom(svc.ClusterIP, uint16(c.Port)), nil
			}
		}
		return netip.AddrPort{}, fmt.Errorf("case %s: no service %s", c.Name, c.Service)
	}
	to := l.Pod(c.To)
	if to == nil {
		return netip.AddrPort{}, fmt.Errorf("case %s: no pod %s", c.Name, c.To)
	}
	return to.AddrPort(c.Port), nil
}
