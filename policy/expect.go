package policy

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Expectation is one line of a `policy test` file: a connection and whether
// the policies should allow it.
type Expectation struct {
	// Name is optional, shown in failures.
	Name     string          `json:"name,omitempty"`
	From     string          `json:"from"` // "namespace/pod" or an IP
	To       string          `json:"to"`
	Port     uint16          `json:"port,omitempty"`
	Protocol corev1.Protocol `json:"protocol,omitempty"` // TCP (default), UDP, SCTP, ICMP
	Allowed  *bool           `json:"allowed"`
}

// Result is an expectation and what the policies say.
type Result struct {
	Expectation
	Verdict Verdict
}

// Passed reports whether the policies (and the enforcer profile) agree with
// the expectation.
func (r Result) Passed() bool { return r.Verdict.Predicted() == *r.Allowed }

// LoadExpectations reads a YAML (or JSON) list of expectations, strictly.
func LoadExpectations(path string) ([]Expectation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read expectations: %w", err)
	}
	var exps []Expectation
	if err := yaml.UnmarshalStrict(data, &exps); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, x := range exps {
		if x.From == "" || x.To == "" || x.Allowed == nil {
			return nil, fmt.Errorf("%s: expectation %d: from, to and allowed are required", path, i)
		}
		proto, err := ParseProtocol(string(x.Protocol))
		if err != nil {
			return nil, fmt.Errorf("%s: expectation %d: %w", path, i, err)
		}
		if x.Port == 0 && proto != ProtocolICMP {
			return nil, fmt.Errorf("%s: expectation %d: port is required for %s", path, i, proto)
		}
	}
	return exps, nil
}

// Check evaluates every expectation. An endpoint that is neither a known
// pod nor an IP is an error naming the expectation.
func Check(e *Engine, exps []Expectation) ([]Result, error) {
	out := make([]Result, 0, len(exps))
	for i, x := range exps {
		src, err := e.Resolve(x.From)
		if err != nil {
			return nil, fmt.Errorf("expectation %d (%s): from: %w", i, x.label(), err)
		}
		dst, err := e.Resolve(x.To)
		if err != nil {
			return nil, fmt.Errorf("expectation %d (%s): to: %w", i, x.label(), err)
		}
		proto, _ := ParseProtocol(string(x.Protocol))
		out = append(out, Result{Expectation: x, Verdict: e.Evaluate(Query{Src: src, Dst: dst, Port: x.Port, Protocol: proto})})
	}
	return out, nil
}

func (x Expectation) label() string {
	if x.Name != "" {
		return x.Name
	}
	return x.From + " -> " + x.To
}

// Resolve turns "namespace/pod" into the pod's IP, or parses an IP. Any
// address is accepted: one that is no pod's is outside the cluster.
func (e *Engine) Resolve(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		a, ok := e.PodAddr(s)
		if !ok {
			return netip.Addr{}, fmt.Errorf("no pod %q with an IP in the cluster state", s)
		}
		return a, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is neither namespace/pod nor an IP address", s)
	}
	return a.Unmap(), nil
}

// ParseProtocol accepts TCP, UDP, SCTP and ICMP (any case); empty is TCP.
func ParseProtocol(s string) (corev1.Protocol, error) {
	switch strings.ToUpper(s) {
	case "", "TCP":
		return corev1.ProtocolTCP, nil
	case "UDP":
		return corev1.ProtocolUDP, nil
	case "SCTP":
		return corev1.ProtocolSCTP, nil
	case "ICMP", "ICMPV6":
		return ProtocolICMP, nil
	}
	return "", fmt.Errorf("protocol %q: must be TCP, UDP, SCTP or ICMP", s)
}
