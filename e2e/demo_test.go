package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestDemoDriftScenario runs `make demo`'s script (the homelab under the real kube-router, the
// drift between git and the cluster, Debian's prometheus with the shipped rules) and checks
// what it shows: exactly the intended mismatches, by name and direction; the node's ping to its
// own pod classified and not a mismatch; the alert expression returning the mismatches from a
// real scrape; and the summary's counts equal to the flows the agents logged.
func TestDemoDriftScenario(t *testing.T) {
	requireRoot(t)
	for _, cmd := range []string{"prometheus", "ping", "jq", "curl"} {
		_, err := exec.LookPath(cmd)
		require.NoError(t, err, "%s is needed (make deps)", cmd)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../cmd/flowlens-agent", "../cmd/flowlens", "../cmd/flowlens-lab")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	keep := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	demo := exec.CommandContext(ctx, "../hack/demo.sh")
	demo.Env = append(os.Environ(), "BIN="+bin, "DEMO_PHASE=12s", "DEMO_KEEP_FLOWS="+keep, "DEMO_LOG="+filepath.Join(keep, "traffic.log"))
	var stdout bytes.Buffer
	demo.Stdout, demo.Stderr = &stdout, &stdout
	require.NoError(t, demo.Run(), "%s", stdout.String())

	flows := readFlowLogs(t, filepath.Join(keep, "node1-flows.json"), filepath.Join(keep, "node2-flows.json"))
	require.NotEmpty(t, flows)

	// Exactly the intended mismatches, each by name and direction (initiator to responder).
	got := map[string]bool{}
	for _, fl := range flows {
		switch m := fl.GetPolicy().GetMismatch(); m {
		case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW:
			if !fl.GetIsReply() {
				got[m.String()+" "+podName(fl.GetSource())+" -> "+podName(fl.GetDestination())+":"+
					itoa(fl.GetL4().GetTcp().GetDestinationPort())] = true
			}
		case flowlensv1.Mismatch_ENFORCER_ALLOW:
			t.Errorf("the lab's kube-router v2.1 has no pre-policy accepts beyond the own node: %v", fl)
		}
	}
	assert.Equal(t, map[string]bool{
		"UNEXPECTED_DROP linkding/linkding-0 -> database/postgresql-cluster-1:5432":    true,
		"UNEXPECTED_ALLOW commafeed/commafeed-0 -> database/postgresql-cluster-1:5432": true,
	}, got)

	// The node's ping to its own pod: judged by the profile, allowed, no mismatch.
	var pings int
	for _, fl := range flows {
		// Echo requests and replies; the unreachables a REJECT sends from the node are not judged.
		if ic := fl.GetL4().GetIcmpv4(); ic != nil && (ic.GetType() == 8 || ic.GetType() == 0) && fl.GetSource().GetKind() == flowlensv1.EndpointKind_HOST &&
			fl.GetDestination().GetKind() == flowlensv1.EndpointKind_POD && fl.GetDestination().GetNodeName() == fl.GetNodeName() {
			pings++
			assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, fl.GetPolicy().GetVerdict())
			assert.Equal(t, flowlensv1.Mismatch_NONE, fl.GetPolicy().GetMismatch())
			assert.Contains(t, fl.GetPolicy().GetSummary(), "its own pod")
			assert.Equal(t, "kube-router-v2.1", fl.GetPolicy().GetEnforcer())
		}
	}
	assert.Positive(t, pings, "the node's ping to its own pod was observed")

	// The shipped alert expression, evaluated by Prometheus over its scrapes of both agents.
	var q struct {
		Data struct {
			Result []struct{ Metric map[string]string } `json:"result"`
		} `json:"data"`
	}
	raw, err := os.ReadFile(filepath.Join(keep, "alert-expr.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &q))
	series := map[string]bool{}
	for _, r := range q.Data.Result {
		series[r.Metric["mismatch"]+" "+r.Metric["source_namespace"]+" -> "+r.Metric["destination_namespace"]] = true
	}
	// Replies of a mismatched connection carry its mismatch in their own direction.
	assert.Equal(t, map[string]bool{
		"UNEXPECTED_DROP linkding -> database": true, "UNEXPECTED_ALLOW commafeed -> database": true,
		"UNEXPECTED_ALLOW database -> commafeed": true,
	}, series)
	alerts, err := os.ReadFile(filepath.Join(keep, "alerts.json"))
	require.NoError(t, err)
	assert.Contains(t, string(alerts), `"alertname":"FlowlensPolicyMismatch"`)

	checkSummary(t, stdout.String(), flows)
}

func readFlowLogs(t *testing.T, paths ...string) []*flowlensv1.Flow {
	t.Helper()
	var out []*flowlensv1.Flow
	for _, p := range paths {
		f, err := os.Open(p)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			fl := &flowlensv1.Flow{}
			require.NoError(t, protojson.Unmarshal(sc.Bytes(), fl), "%s", sc.Text())
			out = append(out, fl)
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return out
}

func podName(ep *flowlensv1.Endpoint) string { return ep.GetNamespace() + "/" + ep.GetPodName() }

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// checkSummary compares each row of the demo's summary table with counts made here from the
// flow logs: forwarded, dropped, mismatched, enforcer-explained, and the "!!" mark.
func checkSummary(t *testing.T, out string, flows []*flowlensv1.Flow) {
	t.Helper()
	_, table, ok := strings.Cut(out, "== summary")
	require.True(t, ok, "the demo prints a summary")
	nameOf := func(ep *flowlensv1.Endpoint) string {
		if ns := ep.GetNamespace(); ns != "" {
			return ns
		}
		if n := ep.GetName(); n != "" {
			return n
		}
		return "?"
	}
	type counts struct{ f, x, m, e int }
	want := map[string]*counts{}
	for _, fl := range flows {
		k := nameOf(fl.GetSource()) + " " + nameOf(fl.GetDestination())
		c := want[k]
		if c == nil {
			c = &counts{}
			want[k] = c
		}
		switch fl.GetVerdict() {
		case flowlensv1.Verdict_FORWARDED:
			c.f++
		case flowlensv1.Verdict_DROPPED:
			c.x++
		}
		switch fl.GetPolicy().GetMismatch() {
		case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW:
			c.m++
		case flowlensv1.Mismatch_ENFORCER_ALLOW:
			c.e++
		}
	}
	row := regexp.MustCompile(`^(!!)?\s*(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$`)
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		c := want[m[2]+" "+m[3]]
		require.NotNil(t, c, "summary row %q has no flows", line)
		assert.Equal(t, []string{itoaInt(c.f), itoaInt(c.x), itoaInt(c.m), itoaInt(c.e)}, m[4:8], line)
		assert.Equal(t, c.m > 0, m[1] == "!!", "mismatch rows are marked: %s", line)
	}
	assert.Equal(t, len(want), rows, "one summary row per source/destination pair")
}

func itoaInt(n int) string { return strconv.Itoa(n) }
