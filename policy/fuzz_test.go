package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

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

// FuzzClusterState feeds arbitrary cluster manifests (what --cluster reads)
// to Compile under a fixed policy set. An accepted state names its pods
// consistently: every pod resolves to an address that resolves back to it,
// and a verdict from it names it as the source.
func FuzzClusterState(f *testing.F) {
	f.Add(fixtureState)
	f.Add("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nstatus: {podIPs: [{ip: 'fd00::1'}, {ip: 10.0.0.9}]}\n")
	f.Add("apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: p, namespace: a}\n  status: {podIP: 10.0.0.1}\n- metadata: {name: q, namespace: a}\n  status: {podIP: 10.0.0.1}\n")
	pols := policies(f, np("a", "deny", denyIngressA)+np("a", "allow", allowIngress("    - podSelector: {}")))
	f.Fuzz(func(t *testing.T, doc string) {
		objs, err := manifest.Decode("cluster.yaml", strings.NewReader(doc))
		if err != nil {
			return
		}
		e, err := Compile(ClusterState{Namespaces: objs.Namespaces, Pods: objs.Pods}, pols)
		if err != nil {
			if !strings.Contains(err.Error(), "cluster.yaml doc ") && !strings.Contains(err.Error(), "/") {
				t.Fatalf("error names no object: %v", err)
			}
			return
		}
		for _, name := range e.Pods() {
			a, ok := e.PodAddr(name)
			if !ok {
				t.Fatalf("pod %s listed without an address", name)
			}
			if back, ok := e.PodAt(a); !ok || back != name {
				t.Fatalf("pod %s at %s, but %s is %q", name, a, a, back)
			}
			if r, err := e.Resolve(name); err != nil || r != a {
				t.Fatalf("Resolve(%s) = %v, %v; want %s", name, r, err, a)
			}
			v := e.Evaluate(Query{Src: a, Dst: a, Port: 80, Protocol: corev1.ProtocolTCP})
			if v.SrcPod != name || v.Allowed != (v.Egress.Allowed && v.Ingress.Allowed) {
				t.Fatalf("verdict from %s: %+v", name, v)
			}
		}
	})
}

// FuzzParseExpectations: an accepted file yields valid expectations that
// survive a round trip through YAML; a rejected one says where.
func FuzzParseExpectations(f *testing.F) {
	f.Add("- {name: x, from: a/b, to: 1.2.3.4, port: 80, allowed: true}\n- {from: 1.2.3.4, to: a/b, protocol: ICMP, allowed: false}\n")
	f.Add("- name: typo\n  from: a/b\n  to: c/d\n  port: 80\n  alowed: true\n")
	f.Add("- &x {from: a, to: b, port: 1, allowed: yes}\n- *x\n")
	f.Add("[]")
	f.Fuzz(func(t *testing.T, in string) {
		exps, err := parseExpectations([]byte(in))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for i, x := range exps {
			if err := x.validate(); err != nil {
				t.Fatalf("accepted expectation %d is invalid: %v", i, err)
			}
		}
		out, err := yaml.Marshal(exps)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseExpectations(out)
		if err != nil {
			t.Fatalf("written back, the expectations are refused: %v\n%s", err, out)
		}
		if len(exps) != len(again) || (len(exps) > 0 && !reflect.DeepEqual(exps, again)) {
			t.Fatalf("round trip changed the expectations:\n%+v\n%+v", exps, again)
		}
	})
}
