package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const homelab = "../../examples/homelab"

var homelabFlags = []string{"--cluster", homelab + "/cluster.yaml", "--policies", homelab + "/network-policies"}

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := NewCommand(&out, &errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create it")
	assert.Equal(t, string(want), got)
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"explain_allow", []string{"explain", "--from", "linkding/linkding-0", "--to", "database/postgresql-cluster-1", "--port", "5432/TCP"}},
		{"explain_deny", []string{"explain", "--from", "homepage/homepage-0", "--to", "database/postgresql-cluster-1", "--port", "5432"}},
		{"explain_external_icmp_json", []string{"explain", "--from", "8.8.8.8", "--to", "linkding/linkding-0", "--port", "ICMP", "-o", "json"}},
		{"explain_not_isolated", []string{"explain", "--from", "kube-system/traefik-6f9d4c7b8-x7k2p", "--to", "kube-system/coredns-7b98449c4-9zq5m", "--port", "53/udp"}},
		{"matrix_namespace", []string{"matrix", "--port", "80/TCP"}},
		{"matrix_pod", []string{"matrix", "--port", "53/UDP", "--by", "pod", "--namespace", "kube-system,linkding,database"}},
		{"eval_text", []string{"eval", "--queries", "testdata/queries.json"}},
		{"eval_json", []string{"eval", "--queries", "testdata/queries.json", "-o", "json"}},
		{"test_verbose", []string{"test", "--expect", "testdata/failing-expectations.yaml", "-v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := run(t, append(tt.args, homelabFlags...)...)
			if strings.HasPrefix(tt.name, "test_") {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			golden(t, tt.name, out)
		})
	}
}

// TestHomelabExpectations is the CI check of examples/homelab: the
// document's traffic flows and blocked list hold for its policies.
func TestHomelabExpectations(t *testing.T) {
	out, _, err := run(t, append([]string{"test", "--expect", homelab + "/expectations.yaml"}, homelabFlags...)...)
	require.NoError(t, err, out)
	assert.NotContains(t, out, "FAIL")
	assert.Regexp(t, `^(\d+) of (\d+) expectations passed\n$`, out)
}

func TestTestFailsWithEveryFailure(t *testing.T) {
	out, _, err := run(t, append([]string{"test", "--expect", "testdata/failing-expectations.yaml"}, homelabFlags...)...)
	require.EqualError(t, err, "2 of 3 expectations failed")
	assert.Equal(t, 2, strings.Count(out, "FAIL "))
	assert.Contains(t, out, "FAIL 0 the document forgets")
	assert.Contains(t, out, "FAIL 1: database/postgresql-cluster-1 -> 1.1.1.1 80/TCP: expected allow, policies deny")
}

func TestEvalJSONIsValid(t *testing.T) {
	out, _, err := run(t, append([]string{"eval", "--queries", "testdata/queries.json", "-o", "json"}, homelabFlags...)...)
	require.NoError(t, err)
	var got []struct {
		Src, Dst, Protocol, Verdict, Summary string
		Port                                 int
		Allowed                              *bool
		Egress, Ingress                      struct {
			Applicable, Isolated, Allowed bool
			IsolatedBy                    []string
			AllowedBy                     []struct {
				Policy string
				Rule   int
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 7)
	assert.Equal(t, "linkding/linkding-0", got[0].Src)
	assert.True(t, *got[0].Allowed)
	assert.Equal(t, "ALLOW", got[0].Verdict)
	assert.Equal(t, "database/allow-apps-ingress", got[0].Ingress.AllowedBy[0].Policy)
	assert.False(t, *got[1].Allowed)
	assert.Equal(t, "UDP", got[2].Protocol)
	assert.False(t, got[4].Egress.Applicable)
	assert.Equal(t, "ICMP", got[6].Protocol)
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"plain", `q"uote\`, "ctl\x00\x1f\n", "utf8 é ✓", "bad \xff byte"} {
		var back string
		require.NoError(t, json.Unmarshal(appendString(nil, s), &back), "%q", s)
		if strings.Contains(s, "\xff") {
			assert.Equal(t, "bad \ufffd byte", back)
		} else {
			assert.Equal(t, s, back)
		}
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{"invalid CIDR names file and document", []string{"explain", "--cluster", homelab + "/cluster.yaml", "--policies", "testdata/bad-policy", "--from", "1.1.1.1", "--to", "2.2.2.2", "--port", "80"},
			`testdata/bad-policy/allow-dns.yaml doc 1: networkpolicy linkding/allow-dns: egress[0].to[0].ipBlock.cidr "10.0.0.0/33": invalid CIDR`},
		{"unknown field in the cluster", []string{"matrix", "--cluster", write("c.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: demo}\nstatus: {podIp: 1.2.3.4}\n"), "--port", "80"},
			`c.yaml doc 0: Pod: unknown field "status.podIp"`},
		{"missing cluster", []string{"matrix", "--port", "80"}, `required flag(s) "cluster" not set`},
		{"bad port", append([]string{"explain", "--from", "1.1.1.1", "--to", "2.2.2.2", "--port", "80/ICMPX"}, homelabFlags...), `--port "80/ICMPX": protocol "ICMPX"`},
		{"port zero", append([]string{"explain", "--from", "1.1.1.1", "--to", "2.2.2.2", "--port", "0/TCP"}, homelabFlags...), `--port "0/TCP": want PORT[/PROTOCOL]`},
		{"unknown pod", append([]string{"explain", "--from", "linkding/nope", "--to", "2.2.2.2", "--port", "80"}, homelabFlags...), `--from: no pod "linkding/nope"`},
		{"bad output", append([]string{"explain", "--from", "1.1.1.1", "--to", "2.2.2.2", "--port", "80", "-o", "yaml"}, homelabFlags...), `-o "yaml": want text or json`},
		{"bad by", append([]string{"matrix", "--port", "80", "--by", "node"}, homelabFlags...), `--by "node"`},
		{"queries not an array", append([]string{"eval", "--queries", write("q1.json", `{"src": "a"}`)}, homelabFlags...), "q1.json: want a JSON array of queries"},
		{"query unknown field", append([]string{"eval", "--queries", write("q2.json", `[{"src": "1.1.1.1", "dst": "2.2.2.2", "port": 80}, {"source": "x"}]`)}, homelabFlags...), `q2.json: query 1: unknown field "source"`},
		{"query unknown pod", append([]string{"eval", "--queries", write("q3.json", `[{"src": "a/b", "dst": "2.2.2.2", "port": 80}]`)}, homelabFlags...), `q3.json: query 0: src: no pod "a/b"`},
		{"query without port", append([]string{"eval", "--queries", write("q4.json", `[{"src": "1.1.1.1", "dst": "2.2.2.2"}]`)}, homelabFlags...), `q4.json: query 0: port is required for TCP`},
		{"query bad protocol", append([]string{"eval", "--queries", write("q5.json", `[{"src": "1.1.1.1", "dst": "2.2.2.2", "port": 1, "protocol": "GRE"}]`)}, homelabFlags...), `q5.json: query 0: protocol "GRE"`},
		{"query trailing data", append([]string{"eval", "--queries", write("q6.json", `[] []`)}, homelabFlags...), `q6.json: trailing data`},
		{"expectations unknown field", append([]string{"test", "--expect", write("e1.yaml", "- {from: 1.1.1.1, to: 2.2.2.2, port: 1, allowed: true, alowed: false}\n")}, homelabFlags...), `e1.yaml: expectation 0 (line 1): unknown field "alowed" on line 1`},
		{"expectation without allowed", append([]string{"test", "--expect", write("e2.yaml", "- {from: 1.1.1.1, to: 2.2.2.2, port: 1}\n")}, homelabFlags...), `e2.yaml: expectation 0 (line 1): from, to and allowed are required`},
		{"expectation unknown pod", append([]string{"test", "--expect", write("e3.yaml", "- {from: x/y, to: 2.2.2.2, port: 1, allowed: true}\n")}, homelabFlags...), `e3.yaml: expectation 0 (x/y -> 2.2.2.2): from: no pod "x/y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, tt.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
		})
	}
}
