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
// Labels stop at namespace and workload unless pod labels are asked for:
// series grow with the workloads seen since start (a pod without a
// controller is its own workload) and are not deleted when one goes away;
// only pod-labelled series are (forgetGonePods). Never by IP or port.
type flowMetrics struct {
	podLabels bool
	node      string

	mu sync.Mutex // guards seenPods
	// seenPods are the namespace/pod pairs that have pod-labelled series.
	seenPods map[[2]string]struct{}

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
		podLabels: podLabels,
		node:      node,
		seenPods:  map[[2]string]struct{}{},
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
	return m, nil
}

func (m *flowMetrics) observe(fl *flowlensv1.Flow) {
	local := m.localEndpoint(fl)
	vals := []string{fl.GetVerdict().String(), fl.GetDropReason(), directionLabel(fl), local.GetNamespace(), workloadName(local)}
	if m.podLabels {
		vals = append(vals, local.GetPodName())
		if pod := local.GetPodName(); pod != "" {
			m.mu.Lock()
			m.seenPods[[2]string{local.GetNamespace(), pod}] = struct{}{}
			m.mu.Unlock()
		}
	}
	m.flows.WithLabelValues(vals...).Inc()
	m.packets.WithLabelValues(vals...).Add(float64(fl.GetCounters().GetPackets()))
	m.bytes.WithLabelValues(vals...).Add(float64(fl.GetCounters().GetBytes()))
	if pv := fl.GetPolicy(); pv != nil {
		m.policy.WithLabelValues(pv.GetVerdict().String(), fl.GetVerdict().String(), local.GetNamespace()).Inc()
		// ENFORCER_ALLOW is counted under its own label value: visible, and
		// kept out of the mismatch alert by its selector.
		switch mm := pv.GetMismatch(); mm {
		case flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW, flowlensv1.Mismatch_ENFORCER_ALLOW:
			m.mismatches.WithLabelValues(mm.String(), fl.GetSource().GetNamespace(), fl.GetDestination().GetNamespace()).Inc()
		}
	}
}

// forgetGonePods drops the series of pods no longer in the cluster, so a
// churning workload does not grow the series count without bound. Only
// pod-labelled series name a pod; without them there is nothing to do.
func (m *flowMetrics) forgetGonePods(current []corev1.Pod) {
	if !m.podLabels {
		return
	}
	live := make(map[[2]string]struct{}, len(current))
	for i := range current {
		live[[2]string{current[i].Namespace, current[i].Name}] = struct{}{}
	}
	m.mu.Lock()
	var gone [][2]string
	for k := range m.seenPods {
		if _, ok := live[k]; !ok {
			gone = append(gone, k)
			delete(m.seenPods, k)
		}
	}
	m.mu.Unlock()
	for _, k := range gone {
		m.forgetPod(k[0], k[1])
	}
}

func (m *flowMetrics) forgetPod(namespace, pod string) {
	sel := prometheus.Labels{"namespace": namespace, "pod": pod}
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
