package bpf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, AttachAuto, cfg.AttachMode)
	assert.Equal(t, []string{"*"}, cfg.Interfaces)
	assert.Equal(t, []string{"*"}, cfg.ExitInterfaces)
	assert.Equal(t, AcceptedAuto, cfg.Accepted)
	assert.Equal(t, 65536, cfg.FlowTableSize)
	assert.Equal(t, 256<<10, cfg.DropRingSize, "the size maps.h declares")
	assert.Equal(t, DefaultWatchCIDRs, cfg.WatchCIDRs)
	assert.Equal(t, 5*time.Second, cfg.FlushInterval)
	assert.Equal(t, time.Minute, cfg.IdleTimeout)
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"mode", Config{AttachMode: "xdp"}, `attach mode "xdp"`},
		{"glob", Config{Interfaces: []string{"veth["}}, `interface glob "veth["`},
		{"exit glob", Config{ExitInterfaces: []string{"flannel["}}, `exit interface glob "flannel["`},
		{"accepted", Config{Accepted: "forward"}, `accepted mode "forward": want auto, egress, netfilter or inference`},
		{"table", Config{FlowTableSize: 3}, "flow table size 3"},
		{"ring not a power of two", Config{DropRingSize: 3 * 4096}, "drop ring size 12288"},
		{"ring below a page", Config{DropRingSize: 64}, "drop ring size 64"},
		{"ring negative", Config{DropRingSize: -4096}, "drop ring size -4096"},
		{"ring too large", Config{DropRingSize: MaxDropRingSize * 2}, "drop ring size"},
		{"cidr", Config{WatchCIDRs: []netip.Prefix{{}}}, "watch CIDR"},
		{"flush", Config{FlushInterval: time.Millisecond}, "flush interval 1ms"},
		{"idle", Config{FlushInterval: time.Minute, IdleTimeout: time.Second}, "idle timeout 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestMatchInterface(t *testing.T) {
	assert.True(t, matchInterface([]string{"veth*"}, "veth1234abcd"))
	assert.False(t, matchInterface([]string{"veth*"}, "flannel.1"))
	assert.True(t, matchInterface([]string{"cni*", "lxc?"}, "lxc1"))
}

func TestPendingDelay(t *testing.T) {
	for _, tc := range []struct {
		flush, want time.Duration
	}{
		{MinFlushInterval, 25 * time.Millisecond},
		{200 * time.Millisecond, 50 * time.Millisecond},
		{time.Second, PendingDelay},
		{DefaultFlushInterval, PendingDelay},
	} {
		assert.Equal(t, tc.want, pendingDelay(tc.flush), "flush interval %v", tc.flush)
	}
}
