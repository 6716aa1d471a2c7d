package observe

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

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
		assert.Contains(t, err.Error(), "unknown mismatch (want UNEXPECTED_DROP (or drop), UNEXPECTED_ALLOW (or allow), ANY, NONE)")
	}
	assert.True(t, strings.Contains(cmd.Example, "--mismatch ANY"), "the example passes a value")
}
