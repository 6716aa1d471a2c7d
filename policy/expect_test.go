package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseExpectations(t *testing.T) {
	const ok = "- name: ok\n  from: 1.1.1.1\n  to: a/b\n  port: 80\n  allowed: true\n"
	tests := []struct {
		name, in, err string
		n             int
	}{
		{name: "valid", in: ok + "- {from: a/b, to: 2.2.2.2, protocol: ICMP, allowed: false}\n", n: 2},
		{name: "empty", in: "# nothing yet\n", n: 0},
		{name: "anchors still work", in: "- &x {from: 1.1.1.1, to: a/b, port: 80, allowed: true}\n- *x\n", n: 2},
		{name: "typo names entry, line and field", in: ok + "- name: typo\n  from: 1.1.1.1\n  to: a/b\n  port: 80\n  alowed: true\n",
			err: `expectation 1 (line 6): unknown field "alowed" on line 10 (want name, from, to, port, protocol, allowed)`},
		{name: "wrong type", in: ok + ok + "- {from: a, to: b, port: http, allowed: true}\n",
			err: "expectation 2 (line 11): cannot unmarshal string into Go struct field Expectation.port of type uint16"},
		{name: "missing allowed", in: ok + "- {from: a, to: b, port: 1}\n", err: "expectation 1 (line 6): from, to and allowed are required"},
		{name: "bad protocol", in: "- {from: a, to: b, port: 1, protocol: GRE, allowed: true}\n", err: `expectation 0 (line 1): protocol "GRE"`},
		{name: "no port", in: "\n\n- {from: a, to: b, allowed: true}\n", err: "expectation 0 (line 3): port is required for TCP"},
		{name: "duplicate key", in: "- {from: a, from: b, to: c, port: 1, allowed: true}\n", err: "expectation 0 (line 1)"},
		{name: "not a list", in: "from: a\n", err: "cannot unmarshal object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExpectations([]byte(tt.in))
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Len(t, got, tt.n)
		})
	}
}
