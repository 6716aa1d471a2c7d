package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

const (
	denyIngressA = "  podSelector: {}\n  policyTypes: [Ingress]"
	denyEgressA  = "  podSelector: {}\n  policyTypes: [Egress]"
)

func allowIngress(from string) string {
	return "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n" + from
}

func TestEvaluateSemantics(t *testing.T) {
	tests := []struct {
		name     string
		policies string
		src, dst string
		port     uint16
		proto    corev1.Protocol
		allowed  bool
		intended flowlensv1.IntendedVerdict
		// optional checks
		ingressBy, egressBy []string // AllowedBy refs
		ingressIso          []string // IsolatedBy refs
		srcNotPod           bool
	}{
		{name: "no policy: not isolated", src: "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_NOT_ISOLATED},
		{name: "default deny ingress isolates the destination", policies: np("a", "deny", denyIngressA),
			src: "b/client", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY, ingressIso: []string{"a/deny"}},
		{name: "ingress isolation does not isolate egress", policies: np("a", "deny", denyIngressA),
			src: "a/web", dst: "b/client", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_NOT_ISOLATED},
		{name: "default deny egress isolates the source", policies: np("a", "deny", denyEgressA),
			src: "a/web", dst: "b/client", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "policies in other namespaces never select", policies: np("b", "deny", denyIngressA),
			src: "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_NOT_ISOLATED},
		{name: "podSelector peer is the policy's namespace only",
			policies: np("a", "allow", allowIngress("    - podSelector: {matchLabels: {app: client}}")),
			src:      "b/client", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "podSelector peer matches in the policy's namespace",
			policies: np("a", "allow", allowIngress("    - podSelector: {matchLabels: {app: client}}")),
			src:      "a/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW, ingressBy: []string{"a/allow rule 0"}},
		{name: "namespaceSelector alone selects every pod of the namespace",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {team: blue}}")),
			src:      "b/web", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "namespaceSelector does not match other namespaces",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {team: blue}}")),
			src:      "c/x", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "namespace name label is implicit",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: c}}")),
			src:      "c/x", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "namespace without a Namespace object still has its name label",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: d}}")),
			src:      "d/why", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "empty namespaceSelector matches pods of every namespace",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {}")),
			src:      "d/why", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "empty namespaceSelector does not match outside IPs",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {}")),
			src:      "8.8.8.8", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY, srcNotPod: true},
		{name: "empty podSelector (absent namespaceSelector) is the policy's namespace only",
			policies: np("a", "allow", allowIngress("    - podSelector: {}")),
			src:      "b/client", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "empty from list allows every source, outside IPs included",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - {}"),
			src:      "8.8.8.8", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW, srcNotPod: true},
		{name: "namespaceSelector AND podSelector in one peer: both match",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {team: blue}}\n      podSelector: {matchLabels: {app: client}}")),
			src:      "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "namespaceSelector AND podSelector in one peer: pod label differs",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {team: blue}}\n      podSelector: {matchLabels: {app: client}}")),
			src:      "b/web", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "two peers are OR",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchLabels: {team: blue}}\n    - podSelector: {matchLabels: {app: client}}")),
			src:      "a/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "matchExpressions In",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [blue, z]}]}")),
			src:      "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "matchExpressions NotIn matches unlabelled namespaces",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [blue]}]}")),
			src:      "c/x", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "matchExpressions Exists",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchExpressions: [{key: env, operator: Exists}]}")),
			src:      "c/x", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "matchExpressions DoesNotExist",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {matchExpressions: [{key: env, operator: DoesNotExist}]}")),
			src:      "c/x", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "policy podSelector with matchExpressions selects only matching pods",
			policies: np("a", "deny", "  podSelector: {matchExpressions: [{key: tier, operator: In, values: [front]}]}"),
			src:      "b/client", dst: "a/db", port: 5432, allowed: true, intended: flowlensv1.IntendedVerdict_NOT_ISOLATED},
		{name: "ipBlock matches pod IPs",
			policies: np("a", "allow", allowIngress("    - ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.2/32]}")),
			src:      "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "ipBlock except",
			policies: np("a", "allow", allowIngress("    - ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.2/32]}")),
			src:      "b/web", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "ipBlock matches outside IPs",
			policies: np("a", "allow", allowIngress("    - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}")),
			src:      "8.8.8.8", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW, srcNotPod: true},
		{name: "hostNetwork pod is not a pod: no namespaceSelector match",
			policies: np("a", "allow", allowIngress("    - namespaceSelector: {}")),
			src:      "192.168.1.10", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY, srcNotPod: true},
		{name: "hostNetwork pod is matched by ipBlock",
			policies: np("a", "allow", allowIngress("    - ipBlock: {cidr: 192.168.1.0/24}")),
			src:      "192.168.1.10", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW, srcNotPod: true},
		{name: "completed pod does not own the IP",
			policies: np("a", "allow", allowIngress("    - podSelector: {matchLabels: {app: web}}")),
			src:      "a/web", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "protocol defaults to TCP: TCP allowed",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]"),
			src:      "b/client", dst: "a/web", port: 80, proto: corev1.ProtocolTCP, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "protocol defaults to TCP: UDP denied",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]"),
			src:      "b/client", dst: "a/web", port: 80, proto: corev1.ProtocolUDP, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "other port denied",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]"),
			src:      "b/client", dst: "a/web", port: 81, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "port without number allows every port of the protocol",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{protocol: UDP}]"),
			src:      "b/client", dst: "a/web", port: 9999, proto: corev1.ProtocolUDP, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "SCTP port",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{protocol: SCTP, port: 9}]"),
			src:      "b/client", dst: "a/web", port: 9, proto: corev1.ProtocolSCTP, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "named port resolved on the destination",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: http}]"),
			src:      "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "named port: other number denied",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: http}]"),
			src:      "b/client", dst: "a/web", port: 8080, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "named port absent on the destination",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: http}]"),
			src:      "b/client", dst: "a/db", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "named port needs the same protocol",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: dns}]"),
			src:      "b/client", dst: "a/web", port: 53, proto: corev1.ProtocolTCP, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "named port with its protocol",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: dns, protocol: UDP}]"),
			src:      "b/client", dst: "a/web", port: 53, proto: corev1.ProtocolUDP, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "egress named port resolved on the destination pod",
			policies: np("a", "eg", "  podSelector: {}\n  egress:\n  - ports: [{port: http}]"),
			src:      "a/web", dst: "c/x", port: 8080, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW, egressBy: []string{"a/eg rule 0"}},
		{name: "egress named port never matches an outside IP",
			policies: np("a", "eg", "  podSelector: {}\n  egress:\n  - ports: [{port: http}]"),
			src:      "a/web", dst: "1.1.1.1", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "endPort range: inside",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: 8000, endPort: 8100}]"),
			src:      "b/client", dst: "a/web", port: 8100, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "endPort range: outside",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{port: 8000, endPort: 8100}]"),
			src:      "b/client", dst: "a/web", port: 8101, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "policyTypes default: egress rules make egress isolation",
			policies: np("a", "eg", "  podSelector: {}\n  egress:\n  - to: [{podSelector: {}}]"),
			src:      "a/web", dst: "b/client", port: 80, intended: flowlensv1.IntendedVerdict_DENY},
		{name: "policyTypes default: ingress always",
			policies: np("a", "eg", "  podSelector: {}\n  egress:\n  - to: [{podSelector: {}}]"),
			src:      "b/client", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY, ingressIso: []string{"a/eg"}},
		{name: "explicit policyTypes Egress ignores ingress rules and does not isolate ingress",
			policies: np("a", "eg", "  podSelector: {}\n  policyTypes: [Egress]\n  ingress:\n  - {}"),
			src:      "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_NOT_ISOLATED},
		{name: "both sides must allow: egress denies",
			policies: np("b", "deny-eg", denyEgressA) + np("a", "allow", "  podSelector: {}\n  ingress:\n  - {}"),
			src:      "b/client", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY, ingressBy: []string{"a/allow rule 0"}},
		{name: "both sides allow",
			policies: np("b", "eg", "  podSelector: {}\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: x}}}]") +
				np("a", "allow", "  podSelector: {}\n  ingress:\n  - {}"),
			src: "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW,
			egressBy: []string{"b/eg rule 0"}, ingressBy: []string{"a/allow rule 0"}},
		{name: "every allowing rule is listed",
			policies: np("a", "p1", "  podSelector: {}\n  ingress:\n  - ports: [{port: 1}]\n  - {}\n  - ports: [{port: 80}]") +
				np("a", "p2", "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {}}]"),
			src: "b/client", dst: "a/web", port: 80, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW,
			ingressBy: []string{"a/p1 rule 1", "a/p1 rule 2", "a/p2 rule 0"}},
		{name: "outside source judged on the destination only",
			policies: np("a", "deny", denyIngressA),
			src:      "8.8.8.8", dst: "a/web", port: 80, intended: flowlensv1.IntendedVerdict_DENY, srcNotPod: true},
		{name: "outside destination judged on the source only",
			policies: np("a", "eg", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n    ports: [{port: 443}]"),
			src:      "a/web", dst: "8.8.8.8", port: 443, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "ICMP allowed by a rule without ports",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - {}"),
			src:      "b/client", dst: "a/web", proto: ProtocolICMP, allowed: true, intended: flowlensv1.IntendedVerdict_ALLOW},
		{name: "ICMP never allowed by a rule with ports",
			policies: np("a", "allow", "  podSelector: {}\n  ingress:\n  - ports: [{protocol: TCP}, {protocol: UDP}, {protocol: SCTP}]"),
			src:      "b/client", dst: "a/web", proto: ProtocolICMP, intended: flowlensv1.IntendedVerdict_DENY},
	}
	state := fixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Compile(state, policies(t, tt.policies))
			require.NoError(t, err)
			v := e.Evaluate(Query{Src: ip(tt.src), Dst: ip(tt.dst), Port: tt.port, Protocol: tt.proto})
			assert.Equal(t, tt.allowed, v.Allowed, v.Summary())
			assert.Equal(t, tt.intended, v.Intended(), v.Summary())
			assert.Equal(t, !tt.srcNotPod, v.Egress.Applicable)
			if tt.ingressBy != nil {
				assert.Equal(t, tt.ingressBy, refStrings(v.Ingress.AllowedBy))
			}
			if tt.egressBy != nil {
				assert.Equal(t, tt.egressBy, refStrings(v.Egress.AllowedBy))
			}
			if tt.ingressIso != nil {
				assert.Equal(t, tt.ingressIso, refStrings(v.Ingress.IsolatedBy))
			}
			// A side that is denied is isolated and names no allowing rule.
			for _, s := range []Side{v.Egress, v.Ingress} {
				if !s.Allowed {
					assert.True(t, s.Isolated)
					assert.Empty(t, s.AllowedBy)
				}
			}
		})
	}
}

func refStrings(refs []Ref) []string {
	out := []string{}
	for _, r := range refs {
		out = append(out, r.String())
	}
	return out
}

func TestCompileRejects(t *testing.T) {
	tests := []struct {
		name, spec, err string
	}{
		{"invalid CIDR", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/33}}]", `egress[0].to[0].ipBlock.cidr "10.0.0.0/33": invalid CIDR`},
		{"except outside cidr", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]", `egress[0].to[0].ipBlock.except[0] "10.1.0.0/24": not strictly inside cidr "10.0.0.0/16"`},
		{"except equal to cidr", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]", `egress[0].to[0].ipBlock.except[0] "10.0.0.0/16": not strictly inside`},
		{"except other family", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0, except: ['::/64']}}]", `egress[0].to[0].ipBlock.except[0] "::/64": not strictly inside`},
		{"invalid except", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [nope]}}]", `egress[0].to[0].ipBlock.except[0] "nope": invalid CIDR`},
		{"endPort with named port", "  podSelector: {}\n  ingress:\n  - ports: [{port: http, endPort: 90}]", `ingress[0].ports[0].endPort: cannot be used with the named port "http"`},
		{"endPort below port", "  podSelector: {}\n  ingress:\n  - ports: [{port: 90, endPort: 80}]", "ingress[0].ports[0].endPort 80: must be between port 90 and 65535"},
		{"endPort without port", "  podSelector: {}\n  ingress:\n  - ports: [{endPort: 80}]", "ingress[0].ports[0].endPort: requires port"},
		{"port zero", "  podSelector: {}\n  ingress:\n  - ports: [{port: 0}]", "ingress[0].ports[0].port 0: must be between 1 and 65535"},
		{"port too big", "  podSelector: {}\n  ingress:\n  - ports: [{port: 70000}]", "ingress[0].ports[0].port 70000: must be between 1 and 65535"},
		{"invalid port name", "  podSelector: {}\n  ingress:\n  - ports: [{port: 'not a name'}]", `ingress[0].ports[0].port "not a name": invalid port name`},
		{"bad protocol", "  podSelector: {}\n  ingress:\n  - ports: [{protocol: ICMP, port: 1}]", `ingress[0].ports[0].protocol "ICMP": must be TCP, UDP or SCTP`},
		{"bad operator", "  podSelector: {matchExpressions: [{key: a, operator: Like, values: [b]}]}", "podSelector: invalid selector"},
		{"In without values", "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]", "ingress[0].from[0].namespaceSelector: invalid selector"},
		{"Exists with values", "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}]", "ingress[0].from[0].podSelector: invalid selector"},
		{"bad label value", "  podSelector: {matchLabels: {a: 'b c'}}", "podSelector: invalid selector"},
		{"ipBlock with selector", "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]", "ingress[0].from[0]: ipBlock cannot be combined"},
		{"empty peer", "  podSelector: {}\n  ingress:\n  - from: [{}]", "ingress[0].from[0]: must specify podSelector, namespaceSelector or ipBlock"},
		{"bad policy type", "  podSelector: {}\n  policyTypes: [Sideways]", `policyTypes[0] "Sideways": must be Ingress or Egress`},
		{"invalid rule of an unused type", "  podSelector: {}\n  policyTypes: [Ingress]\n  egress:\n  - to: [{ipBlock: {cidr: x}}]", "egress[0].to[0].ipBlock.cidr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(fixture(t), policies(t, np("a", "p", tt.spec)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "networkpolicy a/p: "+tt.err)
			var pe *PolicyError
			assert.ErrorAs(t, err, &pe)
		})
	}
}

func TestCompileReportsEveryBadPolicy(t *testing.T) {
	ps := policies(t, np("a", "p1", "  podSelector: {}\n  policyTypes: [X]")+np("b", "p2", "  podSelector: {}\n  policyTypes: [Z]")+np("a", "ok", denyIngressA))
	ps = append(ps, ps[2])
	ps[3].Namespace = "a"
	_, err := Compile(fixture(t), ps)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "networkpolicy a/p1")
	assert.Contains(t, err.Error(), "networkpolicy b/p2")
	assert.Contains(t, err.Error(), "networkpolicy a/ok: defined twice")

	ps = policies(t, np("a", "p1", denyIngressA))
	ps[0].Namespace = ""
	_, err = Compile(fixture(t), ps)
	assert.ErrorContains(t, err, "metadata.namespace is empty")
}

func TestCompileBadPodIP(t *testing.T) {
	st := fixture(t)
	st.Pods[0].Status.PodIP = "10.0.0.300"
	_, err := Compile(st, nil)
	assert.ErrorContains(t, err, `pod a/web: status pod IP "10.0.0.300"`)
}

func TestEngineLookups(t *testing.T) {
	e, err := Compile(fixture(t), nil)
	require.NoError(t, err)
	a, ok := e.PodAddr("a/web")
	assert.True(t, ok)
	assert.Equal(t, addr("10.0.0.1"), a)
	name, ok := e.PodAt(addr("10.0.2.1"))
	assert.True(t, ok)
	assert.Equal(t, "c/x", name)
	_, ok = e.PodAt(addr("192.168.1.10"))
	assert.False(t, ok, "hostNetwork pods are not pods")
	assert.Equal(t, []string{"a/client", "a/db", "a/web", "b/client", "b/web", "c/x", "d/why"}, e.Pods())
	_, err = e.Resolve("a/nope")
	assert.ErrorContains(t, err, `no pod "a/nope"`)
	_, err = e.Resolve("nope")
	assert.ErrorContains(t, err, "neither namespace/pod nor an IP")
	// IPv4-mapped IPv6 addresses are the IPv4 pod.
	v := e.Evaluate(Query{Src: addr("::ffff:10.0.0.1"), Dst: addr("10.0.0.2"), Port: 1})
	assert.Equal(t, "a/web", v.SrcPod)
}

func TestEvaluateDoesNotAllocateOnCommonPaths(t *testing.T) {
	e, err := Compile(fixture(t), policies(t, np("a", "deny", denyIngressA)+np("a", "allow", allowIngress("    - namespaceSelector: {}"))))
	require.NoError(t, err)
	for _, q := range []Query{
		{Src: ip("b/client"), Dst: ip("a/web"), Port: 80}, // one allowing rule
		{Src: ip("8.8.8.8"), Dst: ip("a/web"), Port: 80},  // denied
		{Src: ip("a/web"), Dst: ip("b/client"), Port: 80}, // not isolated
	} {
		allocs := testing.AllocsPerRun(100, func() { _ = e.Evaluate(q) })
		assert.Zero(t, allocs, "%v", q)
	}
}
