package observe

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name.golden (or rewrites it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./observe -update to create it")
	assert.Equal(t, string(want), string(got))
}

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 123e6, time.UTC)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }

// sampleResponses covers what the printers must render: a policy drop with
// its explanation, a service flow, an unexpected drop, a flow to a named CIDR
// without pods, IPv6 ICMP, and lost events.
func sampleResponses() []*flowlensv1.GetFlowsResponse {
	flow := func(f *flowlensv1.Flow) *flowlensv1.GetFlowsResponse {
		return &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: f}, NodeName: f.NodeName, Time: f.Time}
	}
	tcp := func(s, d uint32) *flowlensv1.Layer4 {
		return &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Tcp{Tcp: &flowlensv1.TCP{SourcePort: s, DestinationPort: d}}}
	}
	return []*flowlensv1.GetFlowsResponse{
		flow(&flowlensv1.Flow{
			Time: ts(0), NodeName: "k3s-1", Verdict: flowlensv1.Verdict_DROPPED, DropReason: "NETFILTER_DROP",
			Ip: &flowlensv1.IP{Source: "10.42.0.12", Destination: "10.42.0.34", IpVersion: flowlensv1.IPVersion_IPV4},
			L4: tcp(43210, 9090), TcpFlags: &flowlensv1.TCPFlags{SYN: true},
			Source:      &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "homepage", PodName: "homepage-7d9f-abcde", Labels: []string{"app=homepage"}},
			Destination: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "linkding", PodName: "linkding-0"},
			Policy: &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, Mismatch: flowlensv1.Mismatch_NONE,
				Summary: "default-deny: linkding isolated by default-deny-ingress, no rule allows homepage"},
		}),
		flow(&flowlensv1.Flow{
			Time: ts(250 * time.Millisecond), NodeName: "k3s-1", Verdict: flowlensv1.Verdict_FORWARDED,
			Ip:                 &flowlensv1.IP{Source: "10.42.0.12", Destination: "10.42.0.40", DestinationOriginal: "10.43.0.80"},
			L4:                 tcp(43300, 5432),
			Source:             &flowlensv1.Endpoint{Namespace: "linkding", PodName: "linkding-0"},
			Destination:        &flowlensv1.Endpoint{Namespace: "database", PodName: "postgres-0"},
			DestinationService: &flowlensv1.Service{Namespace: "database", Name: "postgres", Port: 5432},
			Policy:             &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_ALLOW, Summary: "allowed by database/allow-linkding rule 0"},
		}),
		flow(&flowlensv1.Flow{
			Time: ts(time.Second), NodeName: "k3s-2", Verdict: flowlensv1.Verdict_DROPPED, DropReason: "NETFILTER_DROP",
			Ip:          &flowlensv1.IP{Source: "10.42.1.5", Destination: "10.42.1.9"},
			L4:          &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Udp{Udp: &flowlensv1.UDP{SourcePort: 40000, DestinationPort: 53}}},
			Source:      &flowlensv1.Endpoint{Namespace: "monitoring", PodName: "prometheus-0"},
			Destination: &flowlensv1.Endpoint{Namespace: "kube-system", PodName: "coredns-abc"},
			Policy:      &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_ALLOW, Mismatch: flowlensv1.Mismatch_UNEXPECTED_DROP, Summary: "allowed by monitoring/allow-dns rule 0"},
		}),
		flow(&flowlensv1.Flow{
			Time: ts(2 * time.Second), NodeName: "k3s-1", Verdict: flowlensv1.Verdict_FORWARDED,
			Ip:          &flowlensv1.IP{Source: "10.42.0.50", Destination: "192.168.1.10"},
			L4:          tcp(51000, 8006),
			Source:      &flowlensv1.Endpoint{Namespace: "homepage", PodName: "homepage-7d9f-abcde"},
			Destination: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_CIDR, Name: "proxmox"},
		}),
		flow(&flowlensv1.Flow{
			Time: ts(3 * time.Second), NodeName: "k3s-1", Verdict: flowlensv1.Verdict_FORWARDED,
			Ip:          &flowlensv1.IP{Source: "fd00::1", Destination: "2001:db8::9", IpVersion: flowlensv1.IPVersion_IPV6},
			L4:          &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv6{Icmpv6: &flowlensv1.ICMPv6{Type: 128}}},
			Source:      &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_HOST},
			Destination: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD},
		}),
		flow(&flowlensv1.Flow{
			Time: ts(3500 * time.Millisecond), NodeName: "k3s-1", Verdict: flowlensv1.Verdict_DROPPED, DropReason: "NETFILTER_DROP",
			Ip: &flowlensv1.IP{Source: "10.42.0.12", Destination: "10.42.0.34", IpVersion: flowlensv1.IPVersion_IPV4},
			L4: tcp(0, 9090), TcpFlags: &flowlensv1.TCPFlags{SYN: true}, AggregatedAttempts: 4812,
			Counters:    &flowlensv1.Counters{Packets: 4812, Bytes: 192480},
			Source:      &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "homepage", PodName: "homepage-7d9f-abcde"},
			Destination: &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "linkding", PodName: "linkding-0"},
			Policy:      &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, Summary: "default-deny: linkding isolated by default-deny-ingress"},
		}),
		{ResponseTypes: &flowlensv1.GetFlowsResponse_LostEvents{LostEvents: &flowlensv1.LostEvents{
			Source: flowlensv1.LostEventSource_CLIENT_QUEUE, NumEventsLost: 1234, First: ts(3 * time.Second), Last: ts(4 * time.Second)}},
			NodeName: "k3s-1", Time: ts(4 * time.Second)},
	}
}

func TestPrinterGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    printOptions
	}{
		{"compact", printOptions{format: "compact"}},
		{"compact-color", printOptions{format: "compact", color: true}},
		{"table", printOptions{format: "table"}},
		{"json", printOptions{format: "json"}},
		{"jsonpb", printOptions{format: "jsonpb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.o.loc = time.UTC
			tc.o.now = func() time.Time { return t0.Add(time.Hour) }
			p, err := newPrinter(&buf, tc.o)
			require.NoError(t, err)
			for _, r := range sampleResponses() {
				require.NoError(t, p.print(r))
			}
			require.NoError(t, p.flush())
			golden(t, tc.name, buf.Bytes())
		})
	}
}

// Times are the README's "15:04:05.000"; a flow of another day carries its
// date.
func TestPrinterTimes(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		loc  *time.Location
		want string
	}{
		{t0.Add(11 * time.Hour), time.UTC, "12:00:00.123 k3s-1: "},
		{t0.Add(12 * time.Hour), time.UTC, "Nov 26 12:00:00.123 k3s-1: "},
		{t0.Add(-13 * time.Hour), time.UTC, "Nov 26 12:00:00.123 k3s-1: "},
		{t0.Add(13 * time.Hour), time.FixedZone("UTC-3", -3*3600), "09:00:00.123 k3s-1: "},
	} {
		var buf bytes.Buffer
		p, err := newPrinter(&buf, printOptions{loc: tc.loc, now: func() time.Time { return tc.now }})
		require.NoError(t, err)
		require.NoError(t, p.print(sampleResponses()[0]))
		assert.True(t, strings.HasPrefix(buf.String(), tc.want), "now %v: %q", tc.now, buf.String())
	}
}

func TestPrinterUnknownFormat(t *testing.T) {
	_, err := newPrinter(&bytes.Buffer{}, printOptions{format: "yaml"})
	assert.ErrorContains(t, err, `unknown output format "yaml"`)
}

func TestStatusGolden(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, printStatus(&buf, &flowlensv1.ServerStatusResponse{
		NodeName: "k3s-1", Version: "v0.1.0", Kernel: "6.18.0-flowlens", SeenFlows: 123456, NumFlows: 49152, MaxFlows: 65536,
		UptimeNs:    uint64(26*time.Hour + 3*time.Minute + 4*time.Second),
		AttachModes: map[string]string{"veth": "tcx", "drops": "tp_btf/kfree_skb", "accepted": "netfilter-link"},
		LostEvents: []*flowlensv1.LostEvents{{Source: flowlensv1.LostEventSource_KERNEL_RING_BUFFER, NumEventsLost: 7},
			{Source: flowlensv1.LostEventSource_CLIENT_QUEUE, NumEventsLost: 1200}},
		AttachedInterfaces: 14, PolicySource: "files:/etc/flowlens/policies", PolicyState: "loaded 23 policies",
		EnrichmentSource: "cluster", EnrichmentState: "synced",
	}))
	require.NoError(t, printStatus(&buf, &flowlensv1.ServerStatusResponse{NodeName: "bare"}))
	golden(t, "status", buf.Bytes())
}
