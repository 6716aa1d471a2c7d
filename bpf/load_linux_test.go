package bpf

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/lab/netns"
)

func TestLoadPrograms(t *testing.T) {
	requireRoot(t)
	var c *Capture
	require.NoError(t, netns.Do(nodeNetns(t), func() error {
		var err error
		c, err = New(Config{NodeName: "n"}, testLogger(t), prometheus.NewRegistry())
		return err
	}))
	require.NoError(t, c.Close())
}
