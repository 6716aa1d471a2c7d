package observe

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestPrinterEnforcerAllow: a flow the enforcer profile explains is marked
// with its class, and never as a MISMATCH.
func TestPrinterEnforcerAllow(t *testing.T) {
	fl := &flowlensv1.Flow{
		Time: ts(0), NodeName: "k3s-1", Verdict: flowlensv1.Verdict_FORWARDED,
		Ip:          &flowlensv1.IP{Source: "10.42.1.5", Destination: "10.42.0.9"},
		L4:          &flowlensv1.Layer4{Protocol: &flowlensv1.Layer4_Icmpv4{Icmpv4: &flowlensv1.ICMPv4{Type: 8}}},
		Source:      &flowlensv1.Endpoint{Namespace: "monitoring", PodName: "uptime-0"},
		Destination: &flowlensv1.Endpoint{Namespace: "database", PodName: "pg-0"},
		Policy: &flowlensv1.PolicyVerdict{Verdict: flowlensv1.IntendedVerdict_DENY, Mismatch: flowlensv1.Mismatch_ENFORCER_ALLOW,
			Summary: "deny: ...; accepted anyway by enforcer k3s-kube-router: ICMP echo"},
	}
	r := &flowlensv1.GetFlowsResponse{ResponseTypes: &flowlensv1.GetFlowsResponse_Flow{Flow: fl}, NodeName: fl.NodeName, Time: fl.Time}
	for _, format := range []string{"compact", "table"} {
		var buf bytes.Buffer
		p, err := newPrinter(&buf, printOptions{format: format, loc: time.UTC})
		require.NoError(t, err)
		require.NoError(t, p.print(r))
		require.NoError(t, p.flush())
		assert.Contains(t, buf.String(), "accepted anyway by enforcer k3s-kube-router: ICMP echo [ENFORCER_ALLOW]", format)
		assert.NotContains(t, buf.String(), "MISMATCH", format)
	}
}
