package agent

import (
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
	// podWorkload is the workload of each namespace/pod seen in a series.
	podWorkload map[[2]string]string
	// workloadPods are the pods seen in each namespace/workload's series.
	workloadPods map[[2]string]map[string]struct{}

	flows      *prometheus.CounterVec
	packets    *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	mismatches *prometheus.CounterVec
	policy     *prometheus.CounterVec
}

func newFlowMetrics(reg prometheus.Registerer, node string, podLabels bool) (*flowMetrics, error) {
	labels := []string{"verdict", "drop_reason", "direction", "namespace", "workload"}
	if podLabels {
		labels = append(labels, "pod")
	}
	m := &flowMetrics{
		podLabels:    podLabels,
		node:         node,
		podWorkload:  map[[2]string]string{},
		workloadPods: map[[2]string]map[string]struct{}{},
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_flows_total", Help: "Flow records observed, by kernel verdict and the local pod's namespace and workload.",
		}, labels),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_packets_total", Help: "Packets observed, by kernel verdict and the local pod's namespace and workload.",
		}, labels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_bytes_total", Help: "Bytes observed, by kernel verdict and the local pod's namespace and workload.",
		}, labels),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_policy_mismatches_total", Help: "Flow records where the kernel's verdict disagrees with the intended NetworkPolicy set.",
		}, []string{"mismatch", "source_namespace", "destination_namespace"}),
		policy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_policy_verdicts_total", Help: "Flow records by intended NetworkPolicy verdict and kernel verdict.",
		}, []string{"intended", "verdict", "namespace"}),
	}
	for _, c := range []prometheus.Collector{m.flows, m.packets, m.bytes, m.mismatches, m.policy} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Each kind of mismatch exists at zero from the start (namespaces
	// empty), so sum() in alerts and dashboards reads 0 rather than no data.
	for _, mm := range []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_ENFORCER_ALLOW} {
		m.mismatches.WithLabelValues(mm.String(), "", "")
	}
	return m, nil
}

func (m *flowMetrics) observe(fl *flowlensv1.Flow) {
	local := m.localEndpoint(fl)
	ns, workload, pod := local.GetNamespace(), workloadName(local), local.GetPodName()
	vals := []string{fl.GetVerdict().String(), fl.GetDropReason(), directionLabel(fl), ns, workload}
	if m.podLabels {
		vals = append(vals, pod)
	}
	m.mu.Lock()
	if pod != "" {
		m.track(ns, workload, pod)
	}
	m.flows.WithLabelValues(vals...).Inc()
	m.packets.WithLabelValues(vals...).Add(float64(fl.GetCounters().GetPackets()))
	m.bytes.WithLabelValues(vals...).Add(float64(fl.GetCounters().GetBytes()))
	m.mu.Unlock()
	if pv := fl.GetPolicy(); pv != nil {
		m.policy.WithLabelValues(pv.GetVerdict().String(), fl.GetVerdict().String(), ns).Inc()
		// ENFORCER_ALLOW is counted under its own label value: visible, and
		// kept out of the mismatch alert by its selector.
		switch mm := pv.GetMismatch(); mm {
		case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_ENFORCER_ALLOW:
			m.mismatches.WithLabelValues(mm.String(), fl.GetSource().GetNamespace(), fl.GetDestination().GetNamespace()).Inc()
		}
	}
}

// track records that pod's flows are counted under workload. m.mu is held.
func (m *flowMetrics) track(ns, workload, pod string) {
	pk := [2]string{ns, pod}
	if w, ok := m.podWorkload[pk]; ok && w == workload {
		return
	}
	m.podWorkload[pk] = workload
	wk := [2]string{ns, workload}
	if m.workloadPods[wk] == nil {
		m.workloadPods[wk] = map[string]struct{}{}
	}
	m.workloadPods[wk][pod] = struct{}{}
}

// forgetGonePods deletes the series of workloads none of whose pods is in
// the cluster any more (and, with pod labels, of each gone pod), so
// short-lived pods do not grow the series count without bound.
func (m *flowMetrics) forgetGonePods(current []corev1.Pod) {
	live := make(map[[2]string]struct{}, len(current))
	for i := range current {
		live[[2]string{current[i].Namespace, current[i].Name}] = struct{}{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for pk, workload := range m.podWorkload {
		if _, ok := live[pk]; ok {
			continue
		}
		delete(m.podWorkload, pk)
		if m.podLabels {
			m.deleteSeries(prometheus.Labels{"namespace": pk[0], "pod": pk[1]})
		}
		wk := [2]string{pk[0], workload}
		delete(m.workloadPods[wk], pk[1])
		if len(m.workloadPods[wk]) == 0 {
			delete(m.workloadPods, wk)
			m.deleteSeries(prometheus.Labels{"namespace": wk[0], "workload": wk[1]})
		}
	}
}

func (m *flowMetrics) deleteSeries(sel prometheus.Labels) {
	m.flows.DeletePartialMatch(sel)
	m.packets.DeletePartialMatch(sel)
	m.bytes.DeletePartialMatch(sel)
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
