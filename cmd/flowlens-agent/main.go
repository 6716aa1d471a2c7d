// Command flowlens-agent is the per-node daemon: it loads the eBPF capture,
// names and judges every pod flow, and serves them over gRPC, Prometheus
// metrics and a JSON flow log. Run it on every node (deploy/ has the
// DaemonSet); `flowlens-agent --help` lists its settings.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/agent"
	"github.com/flowlens/flowlens/internal/version"
)

func main() {
	cfg := agent.DefaultConfig()
	cmd := &cobra.Command{
		Use:           "flowlens-agent",
		Short:         "Observe every accepted and dropped pod flow on this node",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			// Heap profiling samples the stack of an allocation every 512 KiB
			// into a table of its own (~1.4 MiB reserved): nobody reads it
			// unless --pprof-address serves it.
			if cfg.PprofAddress == "" {
				runtime.MemProfileRate = 0
			}
			log, err := agent.NewLogger(cfg, os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			a, err := agent.New(ctx, cfg, log, os.Stdout)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	cfg.BindFlags(cmd.Flags())
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "flowlens-agent:", err)
		os.Exit(1)
	}
}
