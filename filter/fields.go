package filter

import (
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

type endpointOf func(*flowlensv1.Flow) *flowlensv1.Endpoint

// podRef is a "[namespace/]name-prefix" value.
type podRef struct {
	namespace string // empty: any namespace
	prefix    string
}

func parsePod(field, v string) (podRef, error) {
	if v == "" {
		return podRef{}, &FieldError{field, v, "empty pod name"}
	}
	ns, name, ok := strings.Cut(v, "/")
	if !ok {
		return podRef{prefix: v}, nil
	}
	if ns == "" || strings.Contains(name, "/") {
		return podRef{}, &FieldError{field, v, `want "[namespace/]name"`}
	}
	return podRef{namespace: ns, prefix: name}, nil
}

func podPredicate(field string, values []string, ep endpointOf) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	refs := make([]podRef, 0, len(values))
	for _, v := range values {
		r, err := parsePod(field, v)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return func(fl *flowlensv1.Flow) bool {
		e := ep(fl)
		pod := e.GetPodName()
		if pod == "" {
			return false
		}
		for _, r := range refs {
			if (r.namespace == "" || r.namespace == e.GetNamespace()) && strings.HasPrefix(pod, r.prefix) {
				return true
			}
		}
		return false
	}, nil
}

func eitherPod(values []string) (predicate, error) {
	a, err := podPredicate("pod", values, (*flowlensv1.Flow).GetSource)
	if err != nil || a == nil {
		return nil, err
	}
	b, _ := podPredicate("pod", values, (*flowlensv1.Flow).GetDestination)
	return either(a, b, nil)
}

func namespacePredicate(field string, values []string, ep endpointOf) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	for _, v := range values {
		if v == "" || strings.ContainsAny(v, "/ ") {
			return nil, &FieldError{field, v, "invalid namespace"}
		}
	}
	values = slices.Clone(values)
	return func(fl *flowlensv1.Flow) bool {
		ns := ep(fl).GetNamespace()
		return ns != "" && slices.Contains(values, ns)
	}, nil
}

func eitherNamespace(values []string) (predicate, error) {
	a, err := namespacePredicate("namespace", values, (*flowlensv1.Flow).GetSource)
	if err != nil || a == nil {
		return nil, err
	}
	b, _ := namespacePredicate("namespace", values, (*flowlensv1.Flow).GetDestination)
	return either(a, b, nil)
}

// ParsePrefix parses an IP or a CIDR into a prefix (an IP becomes a /32 or /128).
func ParsePrefix(field, v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, &FieldError{field, v, "invalid CIDR"}
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, &FieldError{field, v, "invalid IP address"}
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func ipPredicate(field string, values []string, ipOf func(*flowlensv1.Flow) string) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	prefixes := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		p, err := ParsePrefix(field, v)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p)
	}
	return func(fl *flowlensv1.Flow) bool {
		a, err := netip.ParseAddr(ipOf(fl))
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}, nil
}

func eitherIP(values []string) (predicate, error) {
	a, err := ipPredicate("ip", values, func(fl *flowlensv1.Flow) string { return fl.GetIp().GetSource() })
	if err != nil || a == nil {
		return nil, err
	}
	b, _ := ipPredicate("ip", values, func(fl *flowlensv1.Flow) string { return fl.GetIp().GetDestination() })
	return either(a, b, nil)
}

func sourcePort(fl *flowlensv1.Flow) uint32 {
	l4 := fl.GetL4()
	switch {
	case l4.GetTcp() != nil:
		return l4.GetTcp().GetSourcePort()
	case l4.GetUdp() != nil:
		return l4.GetUdp().GetSourcePort()
	case l4.GetSctp() != nil:
		return l4.GetSctp().GetSourcePort()
	}
	return 0
}

func destinationPort(fl *flowlensv1.Flow) uint32 {
	l4 := fl.GetL4()
	switch {
	case l4.GetTcp() != nil:
		return l4.GetTcp().GetDestinationPort()
	case l4.GetUdp() != nil:
		return l4.GetUdp().GetDestinationPort()
	case l4.GetSctp() != nil:
		return l4.GetSctp().GetDestinationPort()
	}
	return 0
}

func portPredicate(field string, values []uint32, portOf func(*flowlensv1.Flow) uint32) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	for _, v := range values {
		if v == 0 || v > 65535 {
			return nil, &FieldError{field, uitoa(v), "port out of range 1-65535"}
		}
	}
	values = slices.Clone(values)
	return func(fl *flowlensv1.Flow) bool {
		p := portOf(fl)
		return p != 0 && slices.Contains(values, p)
	}, nil
}

func eitherPort(values []uint32) (predicate, error) {
	a, err := portPredicate("port", values, sourcePort)
	if err != nil || a == nil {
		return nil, err
	}
	b, _ := portPredicate("port", values, destinationPort)
	return either(a, b, nil)
}

// Protocols are the names the protocol field accepts ("icmp" means icmpv4).
var Protocols = []string{"tcp", "udp", "icmpv4", "icmpv6", "sctp"}

type protocol uint8

const (
	protoNone protocol = iota
	protoTCP
	protoUDP
	protoICMPv4
	protoICMPv6
	protoSCTP
)

// ParseProtocol normalizes a protocol name; it is exported for the CLI.
func ParseProtocol(v string) (string, bool) {
	switch p := strings.ToLower(v); p {
	case "icmp":
		return "icmpv4", true
	case "tcp", "udp", "icmpv4", "icmpv6", "sctp":
		return p, true
	}
	return "", false
}

func protocolOf(fl *flowlensv1.Flow) protocol {
	switch fl.GetL4().GetProtocol().(type) {
	case *flowlensv1.Layer4_Tcp:
		return protoTCP
	case *flowlensv1.Layer4_Udp:
		return protoUDP
	case *flowlensv1.Layer4_Icmpv4:
		return protoICMPv4
	case *flowlensv1.Layer4_Icmpv6:
		return protoICMPv6
	case *flowlensv1.Layer4_Sctp:
		return protoSCTP
	}
	return protoNone
}

func protocolPredicate(values []string) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	var want []protocol
	for _, v := range values {
		name, ok := ParseProtocol(v)
		if !ok {
			return nil, &FieldError{"protocol", v, "unknown protocol (want one of " + strings.Join(Protocols, ", ") + ")"}
		}
		want = append(want, protocol(slices.Index(Protocols, name)+1))
	}
	return func(fl *flowlensv1.Flow) bool { return slices.Contains(want, protocolOf(fl)) }, nil
}

func verdictPredicate(values []flowlensv1.Verdict) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	for _, v := range values {
		if v != flowlensv1.Verdict_FORWARDED && v != flowlensv1.Verdict_DROPPED {
			return nil, &FieldError{"verdict", v.String(), "unknown verdict (want FORWARDED or DROPPED)"}
		}
	}
	values = slices.Clone(values)
	return func(fl *flowlensv1.Flow) bool { return slices.Contains(values, fl.GetVerdict()) }, nil
}

// NormalizeDropReason upper-cases a drop reason and strips the kernel's
// SKB_DROP_REASON_ prefix, so "netfilter_drop" and
// "SKB_DROP_REASON_NETFILTER_DROP" both mean NETFILTER_DROP.
func NormalizeDropReason(v string) string {
	return strings.TrimPrefix(strings.ToUpper(v), "SKB_DROP_REASON_")
}

func dropReasonPredicate(values []string) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	want := make([]string, 0, len(values))
	for _, v := range values {
		n := NormalizeDropReason(v)
		if n == "" || strings.Trim(n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
			return nil, &FieldError{"drop_reason", v, "invalid drop reason (want a kernel name such as NETFILTER_DROP)"}
		}
		want = append(want, n)
	}
	return func(fl *flowlensv1.Flow) bool {
		r := fl.GetDropReason()
		return r != "" && slices.Contains(want, r)
	}, nil
}

func directionPredicate(values []flowlensv1.TrafficDirection) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	for _, v := range values {
		if v != flowlensv1.TrafficDirection_INGRESS && v != flowlensv1.TrafficDirection_EGRESS {
			return nil, &FieldError{"traffic_direction", v.String(), "unknown direction (want INGRESS or EGRESS)"}
		}
	}
	values = slices.Clone(values)
	return func(fl *flowlensv1.Flow) bool { return slices.Contains(values, fl.GetTrafficDirection()) }, nil
}

// nodePredicate matches node names exactly or, when a value holds a glob
// character, as a path.Match pattern ("worker-*").
func nodePredicate(values []string) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	for _, v := range values {
		if v == "" {
			return nil, &FieldError{"node_name", v, "empty node name"}
		}
		if _, err := path.Match(v, ""); err != nil {
			return nil, &FieldError{"node_name", v, "invalid pattern"}
		}
	}
	values = slices.Clone(values)
	return func(fl *flowlensv1.Flow) bool {
		n := fl.GetNodeName()
		for _, v := range values {
			if v == n {
				return true
			}
			if strings.ContainsAny(v, `*?[\`) {
				if ok, _ := path.Match(v, n); ok {
					return true
				}
			}
		}
		return false
	}, nil
}

func mismatchPredicate(values []flowlensv1.Mismatch) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	for _, v := range values {
		if _, ok := flowlensv1.Mismatch_name[int32(v)]; !ok || v == flowlensv1.Mismatch_MISMATCH_UNSPECIFIED {
			return nil, &FieldError{"mismatch", v.String(), "unknown mismatch (want NONE, UNEXPECTED_DROP, UNEXPECTED_ALLOW or ENFORCER_ALLOW)"}
		}
	}
	values = slices.Clone(values)
	return func(fl *flowlensv1.Flow) bool { return slices.Contains(values, fl.GetPolicy().GetMismatch()) }, nil
}

// attemptsPredicate selects aggregates of dropped connection attempts. False
// is proto3's unset, so it constrains nothing: "not an aggregate" is this
// field in a denylist.
func attemptsPredicate(only bool) predicate {
	if !only {
		return nil
	}
	return func(fl *flowlensv1.Flow) bool { return fl.GetAggregatedAttempts() > 0 }
}

func uitoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
