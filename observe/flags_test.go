package observe

import (
	"bytes"
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/flowlens/flowlens/agent/observer"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// The README's own example: --mismatch takes the value after a space.
func TestObserveMismatchTakesAValue(t *testing.T) {
	cmd, o := newObserveCommand(&bytes.Buffer{}, &bytes.Buffer{})
	cmd.SetArgs([]string{"-f", "--mismatch", "UNEXPECTED_DROP", "-o", "json", "--print-raw-filters"})
	require.NoError(t, cmd.ExecuteContext(context.Background()))
	req, err := o.request()
	require.NoError(t, err)
	want := []*flowlensv1.FlowFilter{{Mismatch: []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP}}}
	assert.True(t, proto.Equal(&flowlensv1.GetFlowsRequest{Follow: true, Allowlist: want}, req), "%v", req)
	assert.Equal(t, "json", o.output)

	_, _, err = parse(t, "--mismatch")
	assert.ErrorContains(t, err, "flag needs an argument: --mismatch")
}

// --help lists exactly what --mismatch accepts: every listed value parses
// to what it says, and values it does not list are refused.
func TestObserveMismatchHelpIsExact(t *testing.T) {
	cmd, _ := newObserveCommand(&bytes.Buffer{}, &bytes.Buffer{})
	usage := cmd.Flags().Lookup("mismatch").Usage
	listed := regexp.MustCompile(`\b(UNEXPECTED_DROP|UNEXPECTED_ALLOW|ANY|NONE|drop|allow)\b`).FindAllString(usage, -1)
	assert.ElementsMatch(t, []string{"UNEXPECTED_DROP", "drop", "UNEXPECTED_ALLOW", "allow", "ANY", "ANY", "NONE"}, listed, usage)
	drop := []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP}
	allow := []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_ALLOW}
	both := []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW}
	for v, want := range map[string][]flowlensv1.Mismatch{
		"UNEXPECTED_DROP": drop, "unexpected_drop": drop, "drop": drop,
		"UNEXPECTED_ALLOW": allow, "allow": allow,
		"ANY": both, "any": both,
		"NONE": {flowlensv1.Mismatch_NONE}, "none": {flowlensv1.Mismatch_NONE},
	} {
		req, _, err := parse(t, "--mismatch", v)
		require.NoError(t, err, v)
		assert.Equal(t, want, req.GetAllowlist()[0].GetMismatch(), v)
	}
	for _, v := range []string{"true", "yes", "", "MISMATCH_UNSPECIFIED"} {
		_, _, err := parse(t, "--mismatch", v)
		require.Error(t, err, v)
		assert.Contains(t, err.Error(), "unknown mismatch (want UNEXPECTED_DROP (or drop), UNEXPECTED_ALLOW (or allow), ENFORCER_ALLOW (or enforcer), ANY, NONE)")
	}
	assert.True(t, strings.Contains(cmd.Example, "--mismatch ANY"), "the example passes a value")
}

func TestObserveDropReasonIsChecked(t *testing.T) {
	req, _, err := parse(t, "--drop-reason", "skb_drop_reason_no_socket", "--drop-reason", "NETFILTER_DROP", "--drop-reason", "77")
	require.NoError(t, err)
	assert.Equal(t, []string{"NO_SOCKET", "NETFILTER_DROP", "77"}, req.GetAllowlist()[0].GetDropReason())

	_, _, err = parse(t, "--drop-reason", "FOO")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid argument "FOO" for "--drop-reason" flag: unknown drop reason (want a name of the kernel's enum skb_drop_reason`)
	assert.NotContains(t, err.Error(), "did you mean")
	_, _, err = parse(t, "--drop-reason", "netfilter")
	assert.ErrorContains(t, err, "did you mean NETFILTER_DROP")
}

func TestObserveDoubleNot(t *testing.T) {
	_, _, err := parse(t, "--not", "--not", "--pod", "x")
	require.EqualError(t, err, "--not given twice in a row: --not negates the one filter flag after it, and two do not cancel out; give it once")
	req, _, err := parse(t, "--not", "--pod", "x", "--not", "--pod", "y")
	require.NoError(t, err, "--not, a filter, --not again is fine")
	assert.Len(t, req.GetDenylist(), 2)
}

// An agent answers --last in storage order, which is not event time order:
// the CLI sorts what it prints.
func TestObserveLastInTimeOrder(t *testing.T) {
	ring := observer.NewRing(16)
	rs := sampleResponses()
	for _, i := range []int{3, 0, 2, 1} {
		ring.Write(rs[i])
	}
	addr := startAgent(t, ring, "k3s-1").Addr().String()
	ctx := context.Background()
	out, _, err := runCmd(t, ctx, observeCmd(ctx, "--server", addr, "--last", "4"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	assert.True(t, slices.IsSorted(lines), "not in time order:\n%s", out)
	assert.True(t, strings.HasPrefix(lines[0], "Nov 26 12:00:00.123 k3s-1: homepage/"), lines[0])
}

// --attempts is a switch; false is refused with the way to say it.
func TestObserveAttempts(t *testing.T) {
	want := &flowlensv1.FlowFilter{AggregatedAttempts: true}
	tests := []struct {
		args        []string
		allow, deny []*flowlensv1.FlowFilter
		err         string
	}{
		{args: []string{"--attempts"}, allow: []*flowlensv1.FlowFilter{want}},
		{args: []string{"--attempts=true", "--to-port", "5432"},
			allow: []*flowlensv1.FlowFilter{{AggregatedAttempts: true, DestinationPort: []uint32{5432}}}},
		{args: []string{"--not", "--attempts"}, deny: []*flowlensv1.FlowFilter{want}},
		{args: []string{"--attempts=false"}, err: `invalid argument "false" for "--attempts" flag: false selects nothing; to leave aggregates out use --not --attempts`},
		{args: []string{"--attempts=maybe"}, err: `invalid argument "maybe" for "--attempts" flag: want true, or no value`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			req, _, err := parse(t, tt.args...)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			got := &flowlensv1.GetFlowsRequest{Allowlist: req.GetAllowlist(), Denylist: req.GetDenylist()}
			assert.True(t, proto.Equal(&flowlensv1.GetFlowsRequest{Allowlist: tt.allow, Denylist: tt.deny}, got), "%v", req)
		})
	}
}
