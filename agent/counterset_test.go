package agent

import (
	"bytes"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// WithLabelValues is the one series of the family with these label values
// as a Collector, for testutil.ToFloat64; like a CounterVec's, it creates
// the series at zero when there is none.
func (f *counterFamily) WithLabelValues(vals ...string) prometheus.Collector {
	k := keyOf(vals...)
	f.set.add(&k)
	f.set.mu.Lock()
	v := f.set.series[k]
	f.set.mu.Unlock()
	one := &counterSet{names: f.set.names, descs: f.set.descs, series: map[seriesKey]*seriesValues{k: v}}
	return one.family(f.i)
}

// A counterSet's families scrape exactly as CounterVecs counting the same
// (text and protobuf, created timestamps aside: they are when each series
// was first counted), and deleting series removes them from every family.
func TestCounterSetScrapesAsCounterVecs(t *testing.T) {
	labels := []string{"verdict", "namespace", "workload"}
	opts := []prometheus.CounterOpts{{Name: "x_flows_total", Help: "Flows."}, {Name: "x_bytes_total", Help: "Bytes."}}
	set := newCounterSet(labels, opts...)
	vecs := []*prometheus.CounterVec{prometheus.NewCounterVec(opts[0], labels), prometheus.NewCounterVec(opts[1], labels)}
	ours, theirs := prometheus.NewPedanticRegistry(), prometheus.NewPedanticRegistry()
	for i, v := range vecs {
		require.NoError(t, ours.Register(set.family(i)))
		require.NoError(t, theirs.Register(v))
	}
	count := func(vals []string, n uint64) {
		k := keyOf(vals...)
		set.add(&k, 1, n)
		vecs[0].WithLabelValues(vals...).Inc()
		vecs[1].WithLabelValues(vals...).Add(float64(n))
	}
	count([]string{"FORWARDED", "a", "web"}, 100)
	count([]string{"FORWARDED", "a", "web"}, 50)
	count([]string{"DROPPED", "a", "web"}, 7)
	count([]string{"FORWARDED", "b", "db"}, 1<<40)
	count([]string{"FORWARDED", "", ""}, 0)
	k := keyOf("DROPPED", "c", "idle")
	set.add(&k) // created at zero
	vecs[0].WithLabelValues("DROPPED", "c", "idle")
	vecs[1].WithLabelValues("DROPPED", "c", "idle")

	scrape := func(g prometheus.Gatherer, format expfmt.Format) string {
		mfs, err := g.Gather()
		require.NoError(t, err)
		var out bytes.Buffer
		enc := expfmt.NewEncoder(&out, format)
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				require.NotNil(t, m.GetCounter().GetCreatedTimestamp(), "%s has a created timestamp", mf.GetName())
				m.GetCounter().CreatedTimestamp = nil
			}
			require.NoError(t, enc.Encode(mf))
		}
		return out.String()
	}
	for _, format := range []expfmt.Format{expfmt.NewFormat(expfmt.TypeTextPlain), expfmt.NewFormat(expfmt.TypeProtoText)} {
		assert.Equal(t, scrape(theirs, format), scrape(ours, format), "%s", format)
	}

	set.deleteMatching(func(k *seriesKey) bool { return k[1] == "a" && k[2] == "web" })
	for _, v := range vecs {
		v.DeletePartialMatch(prometheus.Labels{"namespace": "a", "workload": "web"})
	}
	text := expfmt.NewFormat(expfmt.TypeTextPlain)
	assert.Equal(t, scrape(theirs, text), scrape(ours, text), "after a delete")
	assert.NotContains(t, scrape(ours, text), `workload="web"`)
}

// A workload's series go when the last pod counted under it goes; a pod
// first counted as its own workload (its owner not known yet) and then
// under its Deployment leaves both.
func TestForgetGonePodsDeletesWorkloadsOfGonePods(t *testing.T) {
	for _, podLabels := range []bool{false, true} {
		m, err := newFlowMetrics(prometheus.NewRegistry(), "node1", podLabels)
		require.NoError(t, err)
		count := func(pod, workload string) {
			ep := &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "a", PodName: pod, NodeName: "node1"}
			if workload != "" {
				ep.Workloads = []*flowlensv1.Workload{{Kind: "Deployment", Name: workload}}
			}
			m.observe(&flowlensv1.Flow{Verdict: flowlensv1.Verdict_FORWARDED, TrafficDirection: flowlensv1.TrafficDirection_EGRESS, Source: ep})
		}
		workloads := func() []string {
			var out []string
			for k := range m.traffic.series {
				out = append(out, k[lWorkload]+"/"+k[lPod])
			}
			slices.Sort(out)
			return out
		}
		pods := func(names ...string) []corev1.Pod {
			var out []corev1.Pod
			for _, n := range names {
				out = append(out, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: n}})
			}
			return out
		}
		count("web-1", "")
		count("web-1", "web")
		count("web-2", "web")
		count("db-0", "db")
		m.forgetGonePods(pods("web-1", "web-2", "db-0"))
		want := []string{"db/", "web-1/", "web/"}
		if podLabels {
			want = []string{"db/db-0", "web-1/web-1", "web/web-1", "web/web-2"}
		}
		assert.Equal(t, want, workloads(), "pod labels %v: all live", podLabels)
		m.forgetGonePods(pods("web-2"))
		want = []string{"web/"} // web-2 keeps the Deployment's series
		if podLabels {
			want = []string{"web/web-2"}
		}
		assert.Equal(t, want, workloads(), "pod labels %v: web-1 and db-0 gone", podLabels)
		m.forgetGonePods(nil)
		assert.Empty(t, workloads(), "pod labels %v: all gone", podLabels)
		assert.Empty(t, m.workloadPods)
	}
}
