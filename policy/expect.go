package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
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
// Errors name the file, the expectation's index and line, and the field.
func LoadExpectations(path string) ([]Expectation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read expectations: %w", err)
	}
	exps, err := parseExpectations(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return exps, nil
}

// parseExpectations decodes the list as a whole; when that fails, it
// decodes the entries one by one to say which entry and line the error is
// about (the whole-list error names neither).
func parseExpectations(data []byte) ([]Expectation, error) {
	items := entries(data)
	at := func(i int) string {
		if i < len(items) {
			return fmt.Sprintf("expectation %d (line %d)", i, items[i].Line)
		}
		return fmt.Sprintf("expectation %d", i)
	}
	var exps []Expectation
	if err := yaml.UnmarshalStrict(data, &exps); err != nil {
		for i, item := range items {
			var x Expectation
			if ierr := decodeEntry(item, &x); ierr != nil {
				return nil, fmt.Errorf("%s: %w", at(i), ierr)
			}
		}
		return nil, errors.New(jsonReason(err))
	}
	for i, x := range exps {
		if err := x.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", at(i), err)
		}
	}
	return exps, nil
}

// entries returns the list's item nodes (for their lines), or nil when the
// file is not a YAML list.
func entries(data []byte) []*yamlv3.Node {
	var doc yamlv3.Node
	if yamlv3.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yamlv3.SequenceNode {
		return nil
	}
	return doc.Content[0].Content
}

var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

// decodeEntry decodes one entry as strictly as the whole list is decoded.
func decodeEntry(item *yamlv3.Node, x *Expectation) error {
	raw, err := yamlv3.Marshal(item)
	if err != nil {
		return err
	}
	err = yaml.UnmarshalStrict(raw, x)
	if err == nil {
		return nil
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		line := item.Line
		for k := 0; k+1 < len(item.Content); k += 2 {
			if item.Content[k].Value == m[1] {
				line = item.Content[k].Line
			}
		}
		return fmt.Errorf("unknown field %q on line %d (want name, from, to, port, protocol, allowed)", m[1], line)
	}
	return errors.New(jsonReason(err))
}

// jsonReason drops the prefixes sigs.k8s.io/yaml puts before the reason.
func jsonReason(err error) string {
	s := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

func (x Expectation) validate() error {
	if x.From == "" || x.To == "" || x.Allowed == nil {
		return errors.New("from, to and allowed are required")
	}
	proto, err := ParseProtocol(string(x.Protocol))
	if err != nil {
		return err
	}
	if x.Port == 0 && proto != ProtocolICMP {
		return fmt.Errorf("port is required for %s", proto)
	}
	return nil
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
