package lab

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hand enforcer writes K3s's KUBE-NWPLCY-COMMON already; asking it for the kube-router add-on
// is a mistake, not a no-op.
func TestK3sICMPOnlyWithKubeRouter(t *testing.T) {
	for _, enf := range []string{"", EnforcerHand} {
		cfg := Config{Enforcer: enf, KubeRouterK3sICMP: true}
		err := cfg.resolve()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "only with enforcer kube-router")
	}
}
