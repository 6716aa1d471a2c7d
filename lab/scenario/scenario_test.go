package scenario

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Scenario)
		want   string
	}{
		{"ok", func(*Scenario) {}, ""},
		{"unknown namespace", func(s *Scenario) { s.Pods[0].Namespace = "nope" }, `unknown namespace "nope"`},
		{"bad node", func(s *Scenario) { s.Pods[0].Node = 3 }, "node 3, want 1 or 2"},
		{"ip outside node", func(s *Scenario) { s.Pods[0].IP = netip.MustParseAddr("10.42.1.99") }, "outside node1's 10.42.0.0/24"},
		{"duplicate ip", func(s *Scenario) { s.Pods[1].IP = s.Pods[0].IP }, "already used by demo/frontend"},
		{"unknown policy", func(s *Scenario) { s.Pods[0].TargetOf = []string{"demo/nope"} }, `targetOf "demo/nope": no such policy rules`},
		{"cross-namespace target", func(s *Scenario) { s.Pods[3].TargetOf = []string{"demo/default-deny-ingress"} }, "own namespace"},
		{"bad peer index", func(s *Scenario) { s.Pods[0].PeerOf = []string{"demo/allow-frontend-to-backend/ingress/1"} }, "has 1 ingress rules"},
		{"bad peer direction", func(s *Scenario) { s.Pods[0].PeerOf = []string{"demo/allow-frontend-to-backend/sideways/0"} }, `direction "sideways"`},
		{"bad protocol", func(s *Scenario) { s.Pods[0].Ports[0].Protocol = "SCTP" }, `protocol "SCTP"`},
		{"service outside range", func(s *Scenario) { s.Services[0].ClusterIP = netip.MustParseAddr("10.42.9.9") }, "outside 10.43.0.0/16"},
		{"unknown backend", func(s *Scenario) { s.Services[0].Backends = []string{"demo/ghost"} }, `backend "demo/ghost"`},
		{"case to nowhere", func(s *Scenario) { s.Cases[0].To = "demo/ghost" }, `to "demo/ghost" is not a pod`},
		{"policy without direction", func(s *Scenario) { s.Rules[0].Ingress = false }, "neither ingress nor egress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultScenario()
			tc.mutate(s)
			err := s.Validate(2)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestWithNodes(t *testing.T) {
	one := DefaultScenario().WithNodes(1)
	for _, p := range one.Pods {
		assert.Equal(t, 1, p.Node, p.Key())
	}
	assert.Equal(t, []string{"demo/backend"}, one.Services[0].Backends)
	for _, c := range one.Cases {
		assert.LessOrEqual(t, c.MinNodes, 1, c.Name)
	}
	assert.Len(t, DefaultScenario().WithNodes(2).Cases, len(DefaultScenario().Cases))
}
