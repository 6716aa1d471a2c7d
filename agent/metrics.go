package agent

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// flowMetrics counts flows from the point of view of the local pod: the
// sender for records counted as it left its veth, the receiver for records
// counted on delivery, and whichever end is a pod of this node for drops.
// Labels stop at namespace and workload unless pod labels are asked for;
// never by IP or port. A pod without a controller (a bare pod, a standalone
// Job's pod) is its own workload, so series follow the pods: a workload's
// series are deleted once none of the pods seen in it is left in the cluster
// (forgetGonePods), and with pod labels a pod's series when it goes.
type flowMetrics struct {
	podLabels bool
	node      string

	// mu guards the maps, and is held while series are added or deleted so
	// a flow of a pod being forgotten cannot leave a series nobody tracks.
	mu sync.Mutex
	// workloadPods are the pods seen in each namespace/workload's series:
	// a handful each (the local pods of a workload), so a slice, a
	// fraction of a map's size, searched in place.
	workloadPods map[[2]string][]string

	// traffic counts flows, packets and bytes by the local pod's labels;
	// mismatchCounts by both ends' namespaces. Their series are plain
	// values (see counterSet): one per workload, and one per namespace
	// pair, add up at 5,000 pods.
	traffic, mismatchCounts *counterSet
	// flows, packets, bytes and mismatches are the families as the
	// registry sees them.
	flows, packets, bytes, mismatches *counterFamily
	policy                            *prometheus.CounterVec
}

// The label positions of traffic's series.
const (
	lVerdict = iota
	lDropReason
	lDirection
	lNamespace
	lWorkload
	lPod
)

func newFlowMetrics(reg prometheus.Registerer, node string, podLabels bool) (*flowMetrics, error) {
	labels := []string{"verdict", "drop_reason", "direction", "namespace", "workload"}
	if podLabels {
		labels = append(labels, "pod")
	}
	m := &flowMetrics{
		podLabels:    podLabels,
		node:         node,
		workloadPods: map[[2]string][]string{},
		traffic: newCounterSet(labels, prometheus.CounterOpts{
			Name: "flowlens_flows_total", Help: "Flow records observed, by kernel verdict and the local pod's namespace and workload.",
		}, prometheus.CounterOpts{
			Name: "flowlens_packets_total", Help: "Packets observed, by kernel verdict and the local pod's namespace and workload.",
		}, prometheus.CounterOpts{
			Name: "flowlens_bytes_total", Help: "Bytes observed, by kernel verdict and the local pod's namespace and workload.",
		}),
		mismatchCounts: newCounterSet([]string{"mismatch", "source_namespace", "destination_namespace"}, prometheus.CounterOpts{
			Name: "flowlens_policy_mismatches_total", Help: "Flow records where the kernel's verdict disagrees with the intended NetworkPolicy set.",
		}),
		policy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_policy_verdicts_total", Help: "Flow records by intended NetworkPolicy verdict and kernel verdict.",
		}, []string{"intended", "verdict", "namespace"}),
	}
	m.flows, m.packets, m.bytes = m.traffic.family(0), m.traffic.family(1), m.traffic.family(2)
	m.mismatches = m.mismatchCounts.family(0)
	for _, c := range []prometheus.Collector{m.flows, m.packets, m.bytes, m.mismatches, m.policy} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Each kind of mismatch exists at zero from the start (namespaces
	// empty), so sum() in alerts and dashboards reads 0 rather than no data.
	for _, mm := range []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_ENFORCER_ALLOW} {
		k := keyOf(mm.String(), "", "")
		m.mismatchCounts.add(&k)
	}
	return m, nil
}

func (m *flowMetrics) observe(fl *flowlensv1.Flow) {
	local := m.localEndpoint(fl)
	ns, workload, pod := local.GetNamespace(), workloadName(local), local.GetPodName()
	k := keyOf(fl.GetVerdict().String(), fl.GetDropReason(), directionLabel(fl), ns, workload)
	if m.podLabels {
		k[lPod] = pod
	}
	m.mu.Lock()
	if pod != "" {
		m.track(ns, workload, pod)
	}
	m.traffic.add(&k, 1, fl.GetCounters().GetPackets(), fl.GetCounters().GetBytes())
	m.mu.Unlock()
	if pv := fl.GetPolicy(); pv != nil {
		m.policy.WithLabelValues(pv.GetVerdict().String(), fl.GetVerdict().String(), ns).Inc()
		// ENFORCER_ALLOW is counted under its own label value: visible, and
		// kept out of the mismatch alert by its selector.
		switch mm := pv.GetMismatch(); mm {
		case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_ENFORCER_ALLOW:
			k := keyOf(mm.String(), fl.GetSource().GetNamespace(), fl.GetDestination().GetNamespace())
			m.mismatchCounts.add(&k, 1)
		}
	}
}

// track records that pod's flows are counted under workload. m.mu is held.
func (m *flowMetrics) track(ns, workload, pod string) {
	wk := [2]string{ns, workload}
	if pods := m.workloadPods[wk]; !slices.Contains(pods, pod) {
		m.workloadPods[wk] = append(pods, pod)
	}
}

// forgetGonePods deletes the series of workloads none of whose pods is in
// the cluster any more (and, with pod labels, of each gone pod), so
// short-lived pods do not grow the series count without bound. A pod
// counted under two workloads (its owner named only later) leaves both.
func (m *flowMetrics) forgetGonePods(current []corev1.Pod) {
	live := make(map[[2]string]struct{}, len(current))
	for i := range current {
		live[[2]string{current[i].Namespace, current[i].Name}] = struct{}{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for wk, pods := range m.workloadPods {
		pods = slices.DeleteFunc(pods, func(pod string) bool {
			if _, ok := live[[2]string{wk[0], pod}]; ok {
				return false
			}
			if m.podLabels {
				m.traffic.deleteMatching(func(k *seriesKey) bool { return k[lNamespace] == wk[0] && k[lPod] == pod })
			}
			return true
		})
		if len(pods) > 0 {
			m.workloadPods[wk] = pods
			continue
		}
		delete(m.workloadPods, wk)
		m.traffic.deleteMatching(func(k *seriesKey) bool { return k[lNamespace] == wk[0] && k[lWorkload] == wk[1] })
	}
}

func (m *flowMetrics) localEndpoint(fl *flowlensv1.Flow) *flowlensv1.Endpoint {
	switch fl.GetTrafficDirection() {
	case flowlensv1.TrafficDirection_EGRESS:
		return fl.GetSource()
	case flowlensv1.TrafficDirection_INGRESS:
		return fl.GetDestination()
	}
	for _, ep := range []*flowlensv1.Endpoint{fl.GetSource(), fl.GetDestination()} {
		if ep.GetKind() == flowlensv1.EndpointKind_POD && (ep.GetNodeName() == m.node || ep.GetNodeName() == "") {
			return ep
		}
	}
	return fl.GetSource()
}

func directionLabel(fl *flowlensv1.Flow) string {
	switch fl.GetTrafficDirection() {
	case flowlensv1.TrafficDirection_EGRESS:
		return "egress"
	case flowlensv1.TrafficDirection_INGRESS:
		return "ingress"
	}
	return ""
}

func workloadName(ep *flowlensv1.Endpoint) string {
	if ws := ep.GetWorkloads(); len(ws) > 0 {
		return ws[0].GetName()
	}
	return ep.GetPodName()
}
