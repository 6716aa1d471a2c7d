package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/internal/testcerts"
)

// The agent's flags and the capture accept exactly the same values: bpf
// owns the bounds, the agent only names the flag.
func TestCaptureBoundsAgree(t *testing.T) {
	tests := []struct {
		name string
		set  func(*Config)
		ok   bool
	}{
		{"table at min", func(c *Config) { c.FlowTableSize = bpf.MinFlowTableSize }, true},
		{"table below min", func(c *Config) { c.FlowTableSize = bpf.MinFlowTableSize - 1 }, false},
		{"table at max", func(c *Config) { c.FlowTableSize = bpf.MaxFlowTableSize }, true},
		{"table above max", func(c *Config) { c.FlowTableSize = bpf.MaxFlowTableSize + 1 }, false},
		{"drop ring one page", func(c *Config) { c.DropRingSize = os.Getpagesize() }, true},
		{"drop ring below a page", func(c *Config) { c.DropRingSize = os.Getpagesize() / 2 }, false},
		{"drop ring not a power of two", func(c *Config) { c.DropRingSize = 3 * os.Getpagesize() }, false},
		{"drop ring at max", func(c *Config) { c.DropRingSize = bpf.MaxDropRingSize }, true},
		{"drop ring above max", func(c *Config) { c.DropRingSize = bpf.MaxDropRingSize * 2 }, false},
		{"flush at min", func(c *Config) { c.FlushInterval = bpf.MinFlushInterval }, true},
		{"flush below min", func(c *Config) { c.FlushInterval = bpf.MinFlushInterval - time.Nanosecond }, false},
		{"idle equals flush", func(c *Config) { c.IdleTimeout = c.FlushInterval }, true},
		{"idle below flush", func(c *Config) { c.IdleTimeout = c.FlushInterval - time.Nanosecond }, false},
		{"attach tc", func(c *Config) { c.AttachMode = string(bpf.AttachTC) }, true},
		{"attach xdp", func(c *Config) { c.AttachMode = "xdp" }, false},
		{"accepted inference", func(c *Config) { c.AcceptedMode = string(bpf.AcceptedInference) }, true},
		{"accepted egress", func(c *Config) { c.AcceptedMode = string(bpf.AcceptedEgress) }, true},
		{"accepted guess", func(c *Config) { c.AcceptedMode = "guess" }, false},
		{"bad exit glob", func(c *Config) { c.ExitInterfaces = []string{"flannel["} }, false},
		{"bad glob", func(c *Config) { c.Interfaces = []string{"veth["} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeName = "n"
			tt.set(&cfg)
			agentErr := cfg.Validate()
			bpfErr := cfg.captureConfig().Validate()
			assert.Equal(t, tt.ok, agentErr == nil, "agent: %v", agentErr)
			assert.Equal(t, tt.ok, bpfErr == nil, "bpf: %v", bpfErr)
		})
	}
}

// The flag defaults are the capture's own defaults.
func TestDefaultConfigMatchesCapture(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "n"
	c := cfg.captureConfig()
	assert.Equal(t, bpf.DefaultFlowTableSize, c.FlowTableSize)
	assert.Equal(t, bpf.DefaultDropRingSize, c.DropRingSize)
	assert.Equal(t, bpf.DefaultFlushInterval, c.FlushInterval)
	assert.Equal(t, bpf.DefaultIdleTimeout, c.IdleTimeout)
	assert.Equal(t, bpf.DefaultWatchCIDRs, c.WatchCIDRs)
	assert.Equal(t, bpf.DefaultInterfaces, c.Interfaces)
}

// A plaintext gRPC API is refused off loopback unless asked for by name.
func TestGRPCPlaintextOffLoopbackNeedsTheFlag(t *testing.T) {
	dir := t.TempDir()
	cert := testcerts.Issue(t, dir, "server", nil, false)
	tests := []struct {
		addr     string
		tls      bool
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:4280", false, false, true},
		{"[::1]:4280", false, false, true},
		{"localhost:4280", false, false, true},
		{":4280", false, false, false},
		{"0.0.0.0:4280", false, false, false},
		{"10.0.0.5:4280", false, false, false},
		{"node1.lan:4280", false, false, false},
		{"0.0.0.0:4280", false, true, true},
		{"0.0.0.0:4280", true, false, true},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		cfg.GRPCAddress = tt.addr
		cfg.GRPCInsecureListen = tt.insecure
		if tt.tls {
			cfg.TLSCert, cfg.TLSKey = cert.CertPath, cert.KeyPath
		}
		err := cfg.Validate()
		assert.Equal(t, tt.ok, err == nil, "%s tls=%v insecure=%v: %v", tt.addr, tt.tls, tt.insecure, err)
		if err != nil {
			assert.ErrorContains(t, err, "--grpc-insecure-listen")
		}
	}
}

// Profiles are served on loopback only, and only when asked for.
func TestPprofAddress(t *testing.T) {
	tests := []struct {
		addr string
		err  string
	}{
		{"", ""},
		{"127.0.0.1:6060", ""},
		{"[::1]:6060", ""},
		{"0.0.0.0:6060", "--pprof-address 0.0.0.0:6060: not loopback"},
		{":6060", "--pprof-address :6060: not loopback"},
		{"6060", `--pprof-address "6060"`},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.NodeName = "n"
		cfg.PprofAddress = tt.addr
		err := cfg.Validate()
		if tt.err == "" {
			assert.NoError(t, err, tt.addr)
			continue
		}
		assert.ErrorContains(t, err, tt.err, tt.addr)
	}
}

// The profiles answer where --pprof-address says, and stop with ctx.
func TestServePprof(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- servePprof(ctx, addr, slog.New(slog.DiscardHandler)) }()
	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, errors.Join(err, resp.Body.Close()))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "heap profile:")
	cancel()
	require.NoError(t, <-done)
}
