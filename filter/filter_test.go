package filter

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// dropFlow is homepage -> linkding:9090 dropped by a default-deny.
func dropFlow() *flowlensv1.Flow {
	return &flowlensv1.Flow{
		NodeName:         "worker-1",
		Verdict:          flowlensv1.Verdict_DROPPED,
		DropReason:       "NETFILTER_DROP",
		TrafficDirection: flowlensv1.TrafficDirection_INGRESS,
		Ip:               &flowlensv1.IP{Source: "10.42.0.12", Destination: "10.42.0.34"},
		L4: &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{
			SourcePort: 43210, DestinationPort: 9090}}},
		Source: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "homepage",
			PodName: "homepage-7d9f-abcde", Labels: []string{"app=homepage", "tier=web"}},
		Destination: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "linkding",
			PodName: "linkding-0", Labels: []string{"app=linkding", "replicas=3"}},
		Policy: &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, Mismatch: flowlensv1.Mismatch_NONE},
	}
}

// dnsFlow is a forwarded UDP DNS query to a host address without a pod.
func dnsFlow() *flowlensv1.Flow {
	return &flowlensv1.Flow{
		NodeName:         "worker-2",
		Verdict:          flowlensv1.Verdict_FORWARDED,
		TrafficDirection: flowlensv1.TrafficDirection_EGRESS,
		Ip:               &flowlensv1.IP{Source: "10.42.0.12", Destination: "fd00::53"},
		L4: &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{
			SourcePort: 5353, DestinationPort: 53}}},
		Source:      &flowlensv1.Endpoint{Namespace: "homepage", PodName: "homepage-7d9f-abcde", Labels: []string{"app=homepage"}},
		Destination: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD},
		Policy:      &flowlensv1.PolicyVerdict{Mismatch: flowlensv1.Mismatch_UNEXPECTED_ALLOW},
	}
}

func TestMatch(t *testing.T) {
	type ff = flowlensv1.FlowFilter
	drop, dns, empty := dropFlow(), dnsFlow(), &flowlensv1.Flow{}
	tests := []struct {
		name        string
		allow, deny []*ff
		drop, dns   bool
	}{
		{name: "no filters", drop: true, dns: true},
		{name: "source pod prefix any namespace", allow: []*ff{{SourcePod: []string{"homepage-"}}}, drop: true, dns: true},
		{name: "destination pod with namespace", allow: []*ff{{DestinationPod: []string{"linkding/linkding"}}}, drop: true},
		{name: "pod namespace must match exactly", allow: []*ff{{DestinationPod: []string{"other/linkding"}}}},
		{name: "either-end pod", allow: []*ff{{Pod: []string{"linkding/"}}}, drop: true},
		{name: "namespace either end", allow: []*ff{{Namespace: []string{"linkding"}}}, drop: true},
		{name: "namespace OR values", allow: []*ff{{DestinationNamespace: []string{"x", "linkding"}}}, drop: true},
		{name: "source namespace", allow: []*ff{{SourceNamespace: []string{"homepage"}}}, drop: true, dns: true},
		{name: "destination cidr", allow: []*ff{{DestinationIp: []string{"10.42.0.0/24"}}}, drop: true},
		{name: "ipv6 either end", allow: []*ff{{Ip: []string{"fd00::/64"}}}, dns: true},
		{name: "source exact ip", allow: []*ff{{SourceIp: []string{"10.42.0.12"}}}, drop: true, dns: true},
		{name: "label equality", allow: []*ff{{SourceLabel: []string{"app=homepage,tier=web"}}}, drop: true},
		{name: "label set based", allow: []*ff{{DestinationLabel: []string{"app in (linkding,x)"}}}, drop: true},
		{name: "label not exists", allow: []*ff{{SourceLabel: []string{"!tier"}}}, dns: true},
		{name: "label notin matches missing", allow: []*ff{{DestinationLabel: []string{"app notin (linkding)"}}}, dns: true},
		{name: "label gt", allow: []*ff{{Label: []string{"replicas>2"}}}, drop: true},
		{name: "label either", allow: []*ff{{Label: []string{"app=linkding"}}}, drop: true},
		{name: "destination port", allow: []*ff{{DestinationPort: []uint32{53}}}, dns: true},
		{name: "source port", allow: []*ff{{SourcePort: []uint32{43210}}}, drop: true},
		{name: "either port", allow: []*ff{{Port: []uint32{5353, 9090}}}, drop: true, dns: true},
		{name: "protocol", allow: []*ff{{Protocol: []string{"UDP"}}}, dns: true},
		{name: "verdict", allow: []*ff{{Verdict: []flowlensv1.Verdict{flowlensv1.Verdict_DROPPED}}}, drop: true},
		{name: "drop reason normalized", allow: []*ff{{DropReason: []string{"skb_drop_reason_netfilter_drop"}}}, drop: true},
		{name: "direction", allow: []*ff{{TrafficDirection: []flowlensv1.TrafficDirection{flowlensv1.TrafficDirection_EGRESS}}}, dns: true},
		{name: "node exact", allow: []*ff{{NodeName: []string{"worker-1"}}}, drop: true},
		{name: "node glob", allow: []*ff{{NodeName: []string{"worker-*"}}}, drop: true, dns: true},
		{name: "mismatch", allow: []*ff{{Mismatch: []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_UNEXPECTED_DROP}}}, dns: true},
		{name: "attempts only", allow: []*ff{{AggregatedAttempts: true}}},
		{name: "attempts hidden", deny: []*ff{{AggregatedAttempts: true}}, drop: true, dns: true},
		{name: "fields AND", allow: []*ff{{SourceNamespace: []string{"homepage"}, Protocol: []string{"tcp"}}}, drop: true},
		{name: "filters OR", allow: []*ff{{Protocol: []string{"tcp"}}, {DestinationPort: []uint32{53}}}, drop: true, dns: true},
		{name: "deny only", deny: []*ff{{Verdict: []flowlensv1.Verdict{flowlensv1.Verdict_FORWARDED}}}, drop: true},
		{name: "allow and deny", allow: []*ff{{SourceNamespace: []string{"homepage"}}}, deny: []*ff{{Protocol: []string{"udp"}}}, drop: true},
		{name: "deny any of several", deny: []*ff{{Protocol: []string{"udp"}}, {Protocol: []string{"tcp"}}}},
		{name: "empty filter matches all", allow: []*ff{{}}, drop: true, dns: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.allow, tt.deny)
			require.NoError(t, err)
			assert.Equal(t, tt.drop, f.Match(drop), "drop flow")
			assert.Equal(t, tt.dns, f.Match(dns), "dns flow")
			// A flow with nothing set must not panic and only passes empty or deny-only filters.
			_ = f.Match(empty)
		})
	}
}

func TestEmptyFlowOnlyMatchesEmptyAllow(t *testing.T) {
	f, err := Compile([]*flowlensv1.FlowFilter{{Pod: []string{"a"}}, {Ip: []string{"1.2.3.4"}}, {Port: []uint32{1}},
		{Label: []string{"a"}}, {Protocol: []string{"tcp"}}, {DropReason: []string{"X"}}, {NodeName: []string{"n"}}}, nil)
	require.NoError(t, err)
	assert.False(t, f.Match(&flowlensv1.Flow{}))
	var nilFilter *Filter
	assert.True(t, nilFilter.Match(&flowlensv1.Flow{}))
}

func TestCompileErrors(t *testing.T) {
	type ff = flowlensv1.FlowFilter
	tests := []struct {
		name string
		f    *ff
		want string
	}{
		{"cidr", &ff{SourceIp: []string{"10.0.0.0/33"}}, `allowlist[0]: source_ip "10.0.0.0/33": invalid CIDR`},
		{"ip", &ff{Ip: []string{"10.0.0.256"}}, `allowlist[0]: ip "10.0.0.256": invalid IP address`},
		{"port zero", &ff{DestinationPort: []uint32{0}}, `allowlist[0]: destination_port "0": port out of range 1-65535`},
		{"port high", &ff{Port: []uint32{70000}}, `allowlist[0]: port "70000": port out of range 1-65535`},
		{"protocol", &ff{Protocol: []string{"http"}}, `allowlist[0]: protocol "http": unknown protocol`},
		{"verdict", &ff{Verdict: []flowlensv1.Verdict{0}}, `allowlist[0]: verdict "VERDICT_UNSPECIFIED": unknown verdict`},
		{"verdict number", &ff{Verdict: []flowlensv1.Verdict{9}}, `allowlist[0]: verdict "9": unknown verdict`},
		{"direction", &ff{TrafficDirection: []flowlensv1.TrafficDirection{7}}, `allowlist[0]: traffic_direction "7": unknown direction`},
		{"mismatch", &ff{Mismatch: []flowlensv1.Mismatch{0}}, `allowlist[0]: mismatch "MISMATCH_UNSPECIFIED": unknown mismatch`},
		{"drop reason", &ff{DropReason: []string{"no such!"}}, `allowlist[0]: drop_reason "no such!": invalid drop reason`},
		{"label", &ff{SourceLabel: []string{"app in (a"}}, `allowlist[0]: source_label "app in (a": invalid label selector`},
		{"empty label", &ff{Label: []string{""}}, `allowlist[0]: label "": empty label selector`},
		{"pod", &ff{Pod: []string{"/x"}}, `allowlist[0]: pod "/x": want "[namespace/]name"`},
		{"empty pod", &ff{DestinationPod: []string{""}}, `allowlist[0]: destination_pod "": empty pod name`},
		{"namespace", &ff{Namespace: []string{"a/b"}}, `allowlist[0]: namespace "a/b": invalid namespace`},
		{"node", &ff{NodeName: []string{"[x"}}, `allowlist[0]: node_name "[x": invalid pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]*ff{tt.f}, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			_, err = Compile(nil, []*ff{{}, tt.f})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "denylist[1]: ")
			var fe *FieldError
			assert.ErrorAs(t, Validate(tt.f), &fe)
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	f, err := Compile([]*flowlensv1.FlowFilter{{
		Pod: []string{"linkding/"}, Ip: []string{"10.42.0.0/16"}, Label: []string{"app in (linkding)"},
		Port: []uint32{9090}, Protocol: []string{"tcp"}, Verdict: []flowlensv1.Verdict{flowlensv1.Verdict_DROPPED},
		DropReason: []string{"NETFILTER_DROP"}, NodeName: []string{"worker-*"},
	}}, []*flowlensv1.FlowFilter{{Mismatch: []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP}}})
	require.NoError(t, err)
	fl := dropFlow()
	require.True(t, f.Match(fl))
	assert.Zero(t, testing.AllocsPerRun(100, func() { f.Match(fl) }))
}

func BenchmarkMatch(b *testing.B) {
	f, err := Compile([]*flowlensv1.FlowFilter{
		{SourceNamespace: []string{"other"}},
		{Pod: []string{"linkding/"}, Ip: []string{"10.42.0.0/16"}, Label: []string{"app in (linkding)"},
			Port: []uint32{9090}, Protocol: []string{"tcp"}, Verdict: []flowlensv1.Verdict{flowlensv1.Verdict_DROPPED}},
	}, []*flowlensv1.FlowFilter{{NodeName: []string{"worker-9"}}})
	require.NoError(b, err)
	fl := dropFlow()
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(fl) {
			b.Fatal("no match")
		}
	}
}

// An aggregate of dropped connection attempts (ns/pod:*, N attempts) is
// what --attempts selects, and what --not --attempts hides.
func TestAttempts(t *testing.T) {
	type ff = flowlensv1.FlowFilter
	agg := dropFlow()
	agg.AggregatedAttempts = 40
	agg.L4.GetTcp().SourcePort = 0
	tests := []struct {
		name        string
		allow, deny []*ff
		agg, single bool
	}{
		{name: "only attempts", allow: []*ff{{AggregatedAttempts: true}}, agg: true},
		{name: "no attempts", deny: []*ff{{AggregatedAttempts: true}}, single: true},
		{name: "attempts AND namespace", allow: []*ff{{AggregatedAttempts: true, DestinationNamespace: []string{"other"}}}},
		{name: "false constrains nothing", allow: []*ff{{AggregatedAttempts: false}}, agg: true, single: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.allow, tt.deny)
			require.NoError(t, err)
			assert.Equal(t, tt.agg, f.Match(agg), "aggregate")
			assert.Equal(t, tt.single, f.Match(dropFlow()), "single drop")
		})
	}
}
