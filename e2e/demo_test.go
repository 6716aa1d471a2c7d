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

// TestDemoDriftScenario runs `make demo`'s script (the homelab under the real kube-router with
// K3s's ICMP accepts, the drift between git and the cluster, Debian's prometheus with the
// shipped rules) and checks what it shows: exactly the intended mismatches, by name and
// direction; linkding's ping to homepage through their default deny forwarded by the kernel and
// classified ENFORCER_ALLOW by the agents' default profile, counted only under that class; the
// alert expression returning exactly the mismatches from a real scrape; and the summary's counts
// equal to the flows the agents logged.
func TestDemoDriftScenario(t *testing.T) {
	requireRoot(t)
	for _, cmd := range []string{"prometheus", "ping", "jq", "curl"} {
		_, err := exec.LookPath(cmd)
		require.NoError(t, err, "%s is needed (make deps)", cmd)
	}
	keep, out := runDemo(t, 8*time.Minute)
	checkDemo(t, keep, out, filepath.Join(keep, "node1-flows.json"), filepath.Join(keep, "node2-flows.json"))
}

// runDemo runs hack/demo.sh with env (DEMO_CLUSTER, say) and short phases, and returns the
// directory it kept its flows and Prometheus's answers in, and what it printed.
func runDemo(t *testing.T, timeout time.Duration, env ...string) (string, string) {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../cmd/flowlens-agent", "../cmd/flowlens", "../cmd/flowlens-lab")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	keep := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	demo := exec.CommandContext(ctx, "../hack/demo.sh")
	demo.Env = append(append(os.Environ(), "BIN="+bin, "DEMO_PHASE=12s", "DEMO_KEEP_FLOWS="+keep, "DEMO_LOG="+filepath.Join(keep, "traffic.log")), env...)
	var stdout bytes.Buffer
	demo.Stdout, demo.Stderr = &stdout, &stdout
	start := time.Now()
	require.NoError(t, demo.Run(), "%s", stdout.String())
	t.Logf("the demo ran in %s", time.Since(start).Round(time.Second))
	return keep, stdout.String()
}

// checkDemo checks what a demo run showed and kept (runDemo), with the flows of flowLogs: the
// intended mismatches by name and direction, the classified ping, the alert and the summary.
func checkDemo(t *testing.T, keep, out string, flowLogs ...string) {
	t.Helper()
	flows := readFlowLogs(t, flowLogs...)
	require.NotEmpty(t, flows)

	// Exactly the intended mismatches, each by name and direction (initiator to responder).
	got, explained := map[string]bool{}, map[string]bool{}
	for _, fl := range flows {
		switch m := fl.GetPolicy().GetMismatch(); m {
		case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW:
			if !fl.GetIsReply() {
				got[m.String()+" "+podName(fl.GetSource())+" -> "+podName(fl.GetDestination())+":"+
					itoa(fl.GetL4().GetTcp().GetDestinationPort())] = true
			}
		case flowlensv1.Mismatch_ENFORCER_ALLOW:
			explained[podName(fl.GetSource())+" -> "+podName(fl.GetDestination())+" icmp "+itoa(fl.GetL4().GetIcmpv4().GetType())] = true
		}
	}
	assert.Equal(t, map[string]bool{
		"UNEXPECTED_DROP linkding/linkding-0 -> database/postgresql-cluster-1:5432":    true,
		"UNEXPECTED_ALLOW commafeed/commafeed-0 -> database/postgresql-cluster-1:5432": true,
	}, got)

	// The ping (and its replies) is the only thing the enforcer profile explains.
	assert.Equal(t, map[string]bool{
		"linkding/linkding-0 -> homepage/homepage-0 icmp 8": true,
		"homepage/homepage-0 -> linkding/linkding-0 icmp 0": true,
	}, explained)
	var pings int
	for _, fl := range flows {
		if ic := fl.GetL4().GetIcmpv4(); ic != nil && ic.GetType() == 8 &&
			podName(fl.GetSource()) == "linkding/linkding-0" && podName(fl.GetDestination()) == "homepage/homepage-0" {
			pings++
			p := fl.GetPolicy()
			assert.Equal(t, flowlensv1.Verdict_FORWARDED, fl.GetVerdict(), "K3s's kube-router accepts it")
			assert.Equal(t, flowlensv1.IntendedVerdict_DENY, p.GetVerdict(), p.GetSummary())
			assert.Equal(t, flowlensv1.Mismatch_ENFORCER_ALLOW, p.GetMismatch())
			assert.Equal(t, "k3s-kube-router", p.GetEnforcer(), "the agents' default profile")
			assert.Contains(t, p.GetSummary(), "accepted anyway by enforcer k3s-kube-router")
			assert.Contains(t, p.GetEnforcerReason(), "KUBE-NWPLCY-COMMON")
		}
	}
	assert.Positive(t, pings, "linkding's ping to homepage was observed")
	checkPingCounted(t, filepath.Join(keep, "mismatches.json"))

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
	// The alerts Prometheus reports (pending or firing): the same series, the ping in none.
	var al struct {
		Data struct {
			Alerts []struct{ Labels map[string]string } `json:"alerts"`
		} `json:"data"`
	}
	raw, err = os.ReadFile(filepath.Join(keep, "alerts.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &al))
	alerted := map[string]bool{}
	for _, a := range al.Data.Alerts {
		if l := a.Labels; l["alertname"] == "FlowlensPolicyMismatch" {
			alerted[l["mismatch"]+" "+l["source_namespace"]+" -> "+l["destination_namespace"]] = true
		}
	}
	assert.Equal(t, series, alerted)

	checkSummary(t, out, flows)
}

// checkPingCounted: in Prometheus's flowlens_policy_mismatches_total, linkding -> homepage is
// counted as ENFORCER_ALLOW and never under the classes the mismatch alert selects.
func checkPingCounted(t *testing.T, path string) {
	t.Helper()
	var q struct {
		Data struct {
			Result []struct {
				Metric map[string]string
				Value  []any
			} `json:"result"`
		} `json:"data"`
	}
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &q))
	counted := map[string]float64{}
	for _, r := range q.Data.Result {
		if r.Metric["source_namespace"] != "linkding" || r.Metric["destination_namespace"] != "homepage" {
			continue
		}
		require.Len(t, r.Value, 2)
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		counted[r.Metric["mismatch"]] += v
	}
	assert.Positive(t, counted["ENFORCER_ALLOW"], "the ping is counted: %v", counted)
	assert.Zero(t, counted["UNEXPECTED_DROP"]+counted["UNEXPECTED_ALLOW"], "not under the alert's classes: %v", counted)
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
