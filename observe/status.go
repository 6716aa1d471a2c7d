package observe

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// NewStatusCommand returns `status`: the agent's ServerStatus in readable
// form (one block per node with --port-forward).
func NewStatusCommand(stdout, stderr io.Writer) *cobra.Command {
	var conn connFlags
	var nodes []string
	cmd := &cobra.Command{
		Use:          "status",
		Short:        "Show the state of flowlens agents: capture, flow store, loss, policy, enrichment",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		// the main prints the error once
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := conn.validate(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), conn.timeout)
			defer cancel()
			conns, targets, closeAll, err := conn.connect(ctx, nodes, stderr)
			if err != nil {
				return err
			}
			defer closeAll()
			for i, c := range conns {
				st, err := flowlensv1.NewObserverClient(c).ServerStatus(ctx, &flowlensv1.ServerStatusRequest{})
				if err != nil {
					return rpcError("server status of", targets[i], err)
				}
				if i > 0 {
					fmt.Fprintln(stdout)
				}
				if err := printStatus(stdout, st); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	conn.addFlags(cmd.Flags())
	cmd.Flags().StringSliceVar(&nodes, "node", nil, "with --port-forward, the nodes whose agents to ask (default: all)")
	return cmd
}

// printStatus writes st as aligned "Key: value" lines.
func printStatus(w io.Writer, st *flowlensv1.ServerStatusResponse) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("Node", st.GetNodeName())
	row("Version", st.GetVersion())
	row("Kernel", st.GetKernel())
	row("Uptime", time.Duration(st.GetUptimeNs()).Round(time.Second).String())
	fill := ""
	if st.GetMaxFlows() > 0 {
		fill = fmt.Sprintf(" (%.1f%% full)", 100*float64(st.GetNumFlows())/float64(st.GetMaxFlows()))
	}
	row("Flows seen", fmt.Sprintf("%d", st.GetSeenFlows()))
	row("Flow store", fmt.Sprintf("%d/%d%s", st.GetNumFlows(), st.GetMaxFlows(), fill))
	row("Interfaces", fmt.Sprintf("%d attached", st.GetAttachedInterfaces()))
	modes := make([]string, 0, len(st.GetAttachModes()))
	for k, v := range st.GetAttachModes() {
		modes = append(modes, k+"="+v)
	}
	slices.Sort(modes)
	row("Attach modes", orNone(strings.Join(modes, ", ")))
	lost := "none"
	if les := st.GetLostEvents(); len(les) > 0 {
		var parts []string
		for _, le := range les {
			parts = append(parts, fmt.Sprintf("%s %d", le.GetSource(), le.GetNumEventsLost()))
		}
		lost = strings.Join(parts, ", ")
	}
	row("Lost events", lost)
	row("Policy", sourceState(st.GetPolicySource(), st.GetPolicyState()))
	row("Enrichment", sourceState(st.GetEnrichmentSource(), st.GetEnrichmentState()))
	return tw.Flush()
}

func sourceState(source, state string) string {
	switch {
	case source == "" && state == "":
		return "none"
	case state == "":
		return source
	case source == "":
		return state
	}
	return source + " (" + state + ")"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
