package policy

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/manifest"
)

// FuzzEvaluate feeds arbitrary policy documents through the loader, the
// compiler and the evaluator: none may panic, and every verdict must be
// consistent with its sides.
func FuzzEvaluate(f *testing.F) {
	f.Add(np("a", "p", allowIngress("    - namespaceSelector: {}\n      podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [x]}]}")), uint32(0x0a000001), uint32(0x0a000101), uint16(80), uint8(0))
	f.Add(np("a", "p", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]\n    ports: [{port: http}, {port: 1, endPort: 100, protocol: UDP}]"), uint32(0x0a000001), uint32(0x08080808), uint16(53), uint8(1))
	f.Add("not yaml: [", uint32(0), uint32(0), uint16(0), uint8(3))
	state := fixture(f)
	protos := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP, ProtocolICMP, ""}
	f.Fuzz(func(t *testing.T, doc string, src, dst uint32, port uint16, proto uint8) {
		objs, err := manifest.Decode("fuzz.yaml", strings.NewReader(doc))
		if err != nil {
			return
		}
		e, err := Compile(state, objs.NetworkPolicies)
		if err != nil {
			return
		}
		addrs := []netip.Addr{v4(src), v4(dst)}
		for _, s := range fixtureIPs {
			addrs = append(addrs, netip.MustParseAddr(s))
		}
		for _, a := range addrs[:3] {
			for _, b := range addrs {
				v := e.Evaluate(Query{Src: a, Dst: b, Port: port, Protocol: protos[int(proto)%len(protos)]})
				if v.Allowed != (v.Egress.Allowed && v.Ingress.Allowed) {
					t.Fatalf("inconsistent verdict %+v", v)
				}
				if !v.Isolated && !v.Allowed {
					t.Fatalf("denied without isolation: %+v", v)
				}
				if v.Summary() == "" || v.Proto() == nil {
					t.Fatal("empty explanation")
				}
			}
		}
	})
}

func v4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}
