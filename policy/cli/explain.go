package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/policy"
)

type explainCmd struct {
	inputs
	from, to, port, output string
}

func newExplain(stdout io.Writer) *cobra.Command {
	c := &explainCmd{}
	cmd := &cobra.Command{
		Use:   "explain --cluster FILE|DIR --policies FILE|DIR --from ns/pod|IP --to ns/pod|IP --port PORT[/PROTO]",
		Short: "Explain the intended verdict of one connection",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.run(stdout) },
	}
	c.register(cmd)
	cmd.Flags().StringVar(&c.from, "from", "", "source: namespace/pod or IP")
	cmd.Flags().StringVar(&c.to, "to", "", "destination: namespace/pod or IP")
	cmd.Flags().StringVar(&c.port, "port", "", "destination port and protocol: 5432/TCP, 53/UDP, 80 (TCP) or ICMP")
	cmd.Flags().StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	for _, f := range []string{"from", "to", "port"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func (c *explainCmd) run(stdout io.Writer) error {
	if c.output != "text" && c.output != "json" {
		return fmt.Errorf("-o %q: want text or json", c.output)
	}
	port, proto, err := parsePort(c.port)
	if err != nil {
		return err
	}
	e, err := c.engine()
	if err != nil {
		return err
	}
	src, err := e.Resolve(c.from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	dst, err := e.Resolve(c.to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	v := e.Evaluate(policy.Query{Src: src, Dst: dst, Port: port, Protocol: proto})
	var b []byte
	if c.output == "json" {
		b = append(appendVerdictJSON(nil, c.from, c.to, &v), '\n')
	} else {
		b = appendExplanation(nil, &v)
	}
	_, err = stdout.Write(b)
	return err
}

// appendExplanation is the readable form: the verdict, then each side.
func appendExplanation(b []byte, v *policy.Verdict) []byte {
	src, dst := name(v.SrcPod, v.Query.Src.String()), name(v.DstPod, v.Query.Dst.String())
	b = fmt.Appendf(b, "%s -> %s %s: %s\n", src, dst, policy.AppendPort(nil, v.Query.Port, v.Query.Protocol), v.Intended())
	b = appendSideText(b, "egress", src, v.SrcPod != "", &v.Egress, dst, v)
	b = appendSideText(b, "ingress", dst, v.DstPod != "", &v.Ingress, src, v)
	b = append(b, "  summary: "...)
	b = v.AppendSummary(b)
	return append(b, '\n')
}

func appendSideText(b []byte, dir, who string, isPod bool, s *policy.Side, other string, v *policy.Verdict) []byte {
	b = fmt.Appendf(b, "  %s of %s: ", dir, who)
	switch {
	case !isPod:
		return append(b, "not a pod, not judged by NetworkPolicy\n"...)
	case !s.Isolated:
		return append(b, "not isolated (no policy selects it for "+dir+"): allowed\n"...)
	}
	b = append(b, "isolated by\n"...)
	for _, r := range s.IsolatedBy {
		b = fmt.Appendf(b, "      %s\n", r)
	}
	if !s.Allowed {
		b = fmt.Appendf(b, "    DENIED: no %s rule of these policies allows %s on %s\n", dir, other, policy.AppendPort(nil, v.Query.Port, v.Query.Protocol))
		return b
	}
	b = append(b, "    allowed by\n"...)
	for _, r := range s.AllowedBy {
		b = fmt.Appendf(b, "      %s (%s[%d])\n", policy.Ref{Namespace: r.Namespace, Name: r.Name, Rule: -1}, dir, r.Rule)
	}
	return b
}

func name(pod, ip string) string {
	if pod != "" {
		return pod
	}
	return ip
}
