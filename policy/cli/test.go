package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/policy"
)

type testCmd struct {
	inputs
	expect  string
	verbose bool
}

func newTest(stdout io.Writer) *cobra.Command {
	c := &testCmd{}
	cmd := &cobra.Command{
		Use:   "test --cluster FILE|DIR --policies FILE|DIR --expect FILE",
		Short: "Check a file of expected verdicts; exit non-zero when one fails",
		Long: "Check expectations against the policies. The file is a YAML list of\n" +
			"  - name: linkding reaches PostgreSQL   # optional\n" +
			"    from: linkding/linkding-0           # namespace/pod or IP\n" +
			"    to: database/postgresql-cluster-1\n" +
			"    port: 5432\n" +
			"    protocol: TCP                       # TCP (default), UDP, SCTP or ICMP\n" +
			"    allowed: true\n" +
			"Every failure is printed; the exit status is non-zero when any fails.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(stdout) },
	}
	c.register(cmd)
	cmd.Flags().StringVar(&c.expect, "expect", "", "YAML file of expectations")
	cmd.Flags().BoolVarP(&c.verbose, "verbose", "v", false, "print passing expectations too")
	_ = cmd.MarkFlagRequired("expect")
	return cmd
}

func (c *testCmd) run(stdout io.Writer) error {
	exps, err := policy.LoadExpectations(c.expect)
	if err != nil {
		return err
	}
	e, err := c.engine()
	if err != nil {
		return err
	}
	results, err := policy.Check(e, exps)
	if err != nil {
		return fmt.Errorf("%s: %w", c.expect, err)
	}
	failed := 0
	var b []byte
	for i, r := range results {
		if r.Passed() && !c.verbose {
			continue
		}
		status := "ok  "
		if !r.Passed() {
			status = "FAIL"
			failed++
		}
		b = fmt.Appendf(b, "%s %d", status, i)
		if r.Name != "" {
			b = fmt.Appendf(b, " %s", r.Name)
		}
		b = fmt.Appendf(b, ": %s -> %s %s: expected %s, policies %s\n", r.From, r.To,
			policy.AppendPort(nil, r.Verdict.Query.Port, r.Verdict.Query.Protocol), word(*r.Allowed), word(r.Verdict.Predicted()))
		if !r.Passed() || c.verbose {
			b = append(b, "     "...)
			b = r.Verdict.AppendSummary(b)
			b = append(b, '\n')
		}
	}
	b = fmt.Appendf(b, "%d of %d expectations passed\n", len(results)-failed, len(results))
	if _, err := stdout.Write(b); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d expectations failed", failed, len(results))
	}
	return nil
}

func word(allowed bool) string {
	if allowed {
		return "allow"
	}
	return "deny"
}
