// Command flowlens-lab builds and removes the K3s-node lab (see package lab): up, down, traffic,
// status. It only wires flags and signals; the lab package holds the logic.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd(log).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "flowlens-lab:", err)
		stop()
		os.Exit(1)
	}
}
