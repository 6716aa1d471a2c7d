package scenario

import (
	"github.com/flowlens/flowlens/lab/netns"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadHomelab(t *testing.T) {
	for _, nodes := range []int{1, 2} {
		d, err := HomelabDir()
		require.NoError(t, err)
		sc, err := LoadHomelab(d, nodes)
		require.NoError(t, err)
		assert.Equal(t, "homelab", sc.Name)
		assert.Contains(t, sc.Namespaces, "kube-system")
		assert.NotEmpty(t, sc.Policies)
		assert.Empty(t, sc.Rules, "homelab is enforced by kube-router only")
		assert.GreaterOrEqual(t, len(sc.Cases), 40)
		pg := -1
		for i, p := range sc.Pods {
			if p.Key() == "database/postgresql-cluster-1" {
				pg = i
			}
			assert.True(t, netns.NodePodCIDR(p.Node).Contains(p.IP), "%s %s on node%d", p.Key(), p.IP, p.Node)
		}
		require.GreaterOrEqual(t, pg, 0)
		assert.Equal(t, nodes, sc.Pods[pg].Node)
		for _, c := range sc.Cases {
			assert.NotContains(t, []string{"", "ICMP"}, c.Protocol, c.Name)
			var to PodSpec
			for _, p := range sc.Pods {
				if p.Key() == c.To {
					to = p
				}
			}
			assert.True(t, servesPort(to, c.Port, c.Protocol), "%s: %s serves %s/%d", c.Name, c.To, c.Protocol, c.Port)
		}
		// A scraping port the pod does not declare is served anyway.
		c, ok := sc.Case("Prometheus scrapes linkding on :8080/metrics")
		require.True(t, ok)
		assert.Equal(t, 8080, c.Port)
	}
}
