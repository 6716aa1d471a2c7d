// Command flowlens is the user's tool: tail an agent's flows (observe),
// read its status, see them on a web page (ui), and check NetworkPolicy
// YAML offline (policy).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/version"
	"github.com/flowlens/flowlens/observe"
	policycli "github.com/flowlens/flowlens/policy/cli"
	"github.com/flowlens/flowlens/ui"
)

func main() {
	root := &cobra.Command{
		Use:           "flowlens",
		Short:         "See which pod flows NetworkPolicy accepts and drops, and why",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.AddCommand(
		observe.NewObserveCommand(os.Stdout, os.Stderr),
		observe.NewStatusCommand(os.Stdout, os.Stderr),
		policycli.NewCommand(os.Stdout, os.Stderr),
		ui.NewCommand(os.Stdout, os.Stderr),
	)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowlens:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode lets `flowlens policy test` report failed expectations with a
// distinct code from bad input.
func exitCode(err error) int {
	var c interface{ ExitCode() int }
	if e, ok := err.(interface{ ExitCode() int }); ok {
		c = e
		return c.ExitCode()
	}
	return 1
}
