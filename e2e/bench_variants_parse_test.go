package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBenchVariants(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []benchVariant
		err      bool
	}{
		{name: "flags, values and environment", in: "base=; infer=--accepted-mode inference;slow=A=1 --flush-interval=1s",
			want: []benchVariant{{name: "base"}, {name: "infer", args: []string{"--accepted-mode", "inference"}},
				{name: "slow", args: []string{"--flush-interval=1s"}, env: []string{"A=1"}}}},
		{name: "no name", in: "=--x", err: true},
		{name: "no equals", in: "base", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBenchVariants(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
