package bpf

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestLoadPrograms(t *testing.T) {
	requireRoot(t)
	tn := newTestNode(t, "10.42.0", 0)
	var c *Capture
	inNetns(t, tn.node, func() {
		var err error
		c, err = New(Config{NodeName: "n"}, testLogger(t), prometheus.NewRegistry())
		require.NoError(t, err)
	})
	require.NoError(t, c.Close())
}
