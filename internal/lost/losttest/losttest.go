// Package losttest checks, with promtool, that losses counted in
// flowlens_lost_events_total fire the FlowlensLostEvents alert of
// deploy/prometheus/flowlens-rules.yaml.
package losttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const metric = "flowlens_lost_events_total"

// Scrape returns flowlens_lost_events_total by source, as a scrape of g sees it.
func Scrape(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "source" {
					out[lp.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// AssertAlertFires turns two scrapes, before and after a burst of loss,
// into series that lose that much again every minute, and runs promtool
// on the rules: FlowlensLostEvents must fire for exactly the sources that
// grew (want), and for none before the loss. Every source of after must
// already be in before (exported at zero from the start).
func AssertAlertFires(t *testing.T, before, after map[string]float64, want ...string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus, `make deps`): %v", err)
	}
	var series, alerts []string
	sources := make([]string, 0, len(after))
	for s := range after {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	for _, s := range sources {
		b, ok := before[s]
		if !ok {
			t.Errorf("source %s had no series before the loss", s)
		}
		step := after[s] - b
		series = append(series, fmt.Sprintf("      - series: '%s{instance=\"node1\",source=\"%s\"}'\n        values: '%g+%gx40'", metric, s, b, step))
		if step > 0 {
			alerts = append(alerts, fmt.Sprintf("          - exp_labels: {severity: warning, instance: node1, source: %s}\n"+
				"            exp_annotations:\n              summary: \"flowlens on node1 is losing records (%s)\"\n"+
				"              description: \"Raise --flow-table-size or --queue-size, or reduce what is observed with --interfaces.\"", s, s))
		}
	}
	grew := make([]string, 0, len(alerts))
	for _, s := range sources {
		if after[s] > before[s] {
			grew = append(grew, s)
		}
	}
	sort.Strings(want)
	if strings.Join(grew, ",") != strings.Join(want, ",") {
		t.Errorf("sources that lost events: %v, want %v", grew, want)
	}
	_, self, _, _ := runtime.Caller(0)
	rules := filepath.Join(filepath.Dir(self), "..", "..", "..", "deploy", "prometheus", "flowlens-rules.yaml")
	test := fmt.Sprintf(`rule_files: [%q]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
%s
    alert_rule_test:
      - eval_time: 0m
        alertname: FlowlensLostEvents
        exp_alerts: []
      - eval_time: 25m
        alertname: FlowlensLostEvents
        exp_alerts:
%s
`, rules, strings.Join(series, "\n"), strings.Join(alerts, "\n"))
	if len(alerts) == 0 {
		test = strings.Replace(test, "exp_alerts:\n\n", "exp_alerts: []\n", 1)
	}
	file := filepath.Join(t.TempDir(), "lost_test.yaml")
	if err := os.WriteFile(file, []byte(test), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", file).CombinedOutput()
	if err != nil {
		t.Errorf("promtool test rules: %v\n%s\n--- test file ---\n%s", err, out, test)
	}
}
