package enrich

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func objKey(namespace, name string) string { return namespace + "/" + name }

// upsertPod indexes a pod's IPs. A pod in a terminal phase holds no IP any
// more (the kubelet may hand it to a new pod while the object lingers), and
// a hostNetwork pod's IPs are the node's and resolve to the node.
func (ix *index) upsertPod(pod *podInfo, now time.Time) {
	key := objKey(pod.namespace, pod.name)
	var ips []netip.Addr
	if pod.phase != corev1.PodSucceeded && pod.phase != corev1.PodFailed {
		ips = podAddrs(pod)
	}
	host := pod.hostNetwork

	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.pods[key]
	if old != nil {
		ix.releasePodLocked(key, old, ips, host, now)
	}
	st := &podState{pod: pod, ips: ips, host: host}
	ix.pods[key] = st
	if host {
		nodeID := ix.nodeIdentityLocked(pod.nodeName)
		for _, ip := range ips {
			h := ix.hostIPs[ip]
			if h == nil {
				h = &hostAddr{}
				ix.hostIPs[ip] = h
			}
			if h.fromPods == nil {
				h.fromPods = map[string]*Identity{}
			}
			h.fromPods[key] = nodeID
		}
	} else if len(ips) > 0 {
		id := ix.podIdentityLocked(pod)
		for _, ip := range ips {
			ix.claimLocked(ip, key, id, now)
		}
	}
	ix.changed.Notify()
}

// releasePodLocked lets go of the IPs an older version of the pod held and
// the new version (keep, keepHost) does not.
func (ix *index) releasePodLocked(key string, old *podState, keep []netip.Addr, keepHost bool, now time.Time) {
	for _, ip := range old.ips {
		if old.host == keepHost && slices.Contains(keep, ip) {
			continue
		}
		if old.host {
			ix.dropHostPodLocked(ip, key)
		} else {
			ix.releaseLocked(ip, key, now)
		}
	}
}

func (ix *index) deletePod(namespace, name string, now time.Time) {
	key := objKey(namespace, name)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.pods[key]
	if old == nil {
		return
	}
	ix.releasePodLocked(key, old, nil, false, now)
	delete(ix.pods, key)
	ix.changed.Notify()
}

// claimLocked gives ip to the pod key. If another pod still holds it (its
// delete not seen yet, or a terminal pod's IP reused) the new pod takes it
// and the old one becomes the previous holder.
func (ix *index) claimLocked(ip netip.Addr, key string, id *Identity, now time.Time) {
	s := ix.podIPs[ip]
	if s == nil {
		s = &ipSlot{}
		ix.podIPs[ip] = s
	}
	switch {
	case s.cur.id != nil && s.cur.key == key:
		s.cur.id = id
		return
	case s.cur.id != nil:
		s.prev = holder{key: s.cur.key, id: s.cur.id, until: now}
	case s.prev.id != nil && s.prev.key == key:
		// The same pod is back (an update after a missed delete): it never
		// really let go.
		s.prev = holder{}
	}
	s.cur = holder{key: key, id: id}
}

func (ix *index) releaseLocked(ip netip.Addr, key string, now time.Time) {
	s := ix.podIPs[ip]
	if s == nil || s.cur.id == nil || s.cur.key != key {
		return
	}
	s.prev = holder{key: s.cur.key, id: s.cur.id, until: now}
	s.cur = holder{}
}

func (ix *index) dropHostPodLocked(ip netip.Addr, key string) {
	h := ix.hostIPs[ip]
	if h == nil {
		return
	}
	delete(h.fromPods, key)
	if h.fromNode == nil && len(h.fromPods) == 0 {
		delete(ix.hostIPs, ip)
	}
}

// podAddrs returns status.podIPs (falling back to status.podIP), unmapped
// and without duplicates.
func podAddrs(pod *podInfo) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, ip := range pod.podIPs {
		add(ip)
	}
	if pod.podIP != "" {
		add(pod.podIP)
	}
	return out
}

func (ix *index) podIdentityLocked(pod *podInfo) *Identity {
	var nsLabels []string
	if ns := ix.namespaces[pod.namespace]; ns != nil {
		nsLabels = ns.labels
	}
	id := &Identity{
		Kind:            flowlensv1.EndpointKind_POD,
		Namespace:       pod.namespace,
		Name:            pod.name,
		Labels:          pairStrings(pod.labels),
		NamespaceLabels: nsLabels,
		Workload:        ix.workloadLocked(pod),
		NodeName:        pod.nodeName,
		Ports:           containerPorts(pod),
	}
	return id.publish()
}

// rebuildPodsLocked refreshes the identities of the pods match selects,
// after their namespace's labels or their owner's controller changed.
func (ix *index) rebuildPodsLocked(match func(*podInfo) bool) {
	for key, st := range ix.pods {
		if st.host || len(st.ips) == 0 || !match(st.pod) {
			continue
		}
		id := ix.podIdentityLocked(st.pod)
		for _, ip := range st.ips {
			s := ix.podIPs[ip]
			if s == nil {
				continue
			}
			if s.cur.key == key {
				s.cur.id = id
			}
		}
	}
}

// pairStrings renders sorted key, value pairs as "k=v" strings.
func pairStrings(kv []string) []string {
	if len(kv) == 0 {
		return nil
	}
	out := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]+"="+kv[i+1])
	}
	// Sorted as labelStrings sorts: "a-b=x" comes before "a=y".
	sort.Strings(out)
	return out
}

// labelStrings renders labels as sorted "k=v" strings.
func labelStrings(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func containerPorts(pod *podInfo) []NamedPort {
	var out []NamedPort
	for _, p := range pod.ports {
		proto := string(p.protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		out = append(out, NamedPort{Name: p.name, Port: uint16(p.port), Protocol: proto})
	}
	return out
}

func (ix *index) upsertNamespace(ns *corev1.Namespace) {
	labels := labelStrings(withNameLabel(ns))
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.namespaces[ns.Name]
	if old != nil && slices.Equal(old.labels, labels) {
		old.ns = ns
		ix.changed.Notify()
		return
	}
	ix.namespaces[ns.Name] = &nsState{ns: ns, labels: labels}
	name := ns.Name
	ix.rebuildPodsLocked(func(p *podInfo) bool { return p.namespace == name })
	ix.changed.Notify()
}

// withNameLabel adds kubernetes.io/metadata.name, which the API server sets
// on every namespace, so a static manifest without it still matches
// namespaceSelectors written against it.
func withNameLabel(ns *corev1.Namespace) map[string]string {
	const nameLabel = "kubernetes.io/metadata.name"
	if _, ok := ns.Labels[nameLabel]; ok {
		return ns.Labels
	}
	m := make(map[string]string, len(ns.Labels)+1)
	for k, v := range ns.Labels {
		m[k] = v
	}
	m[nameLabel] = ns.Name
	return m
}

func (ix *index) deleteNamespace(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.namespaces[name]; !ok {
		return
	}
	delete(ix.namespaces, name)
	ix.changed.Notify()
}

// ownerKey names a ReplicaSet or Job.
type ownerKey struct {
	kind, namespace, name string
}

// workloadLocked resolves the pod's controller one level further for
// ReplicaSets and Jobs, from the owners table when the owner is known and
// otherwise by the pod-template-hash naming rule for ReplicaSets.
func (ix *index) workloadLocked(pod *podInfo) Workload {
	ref := pod.controller
	if ref.Kind == "" {
		return Workload{Kind: "Pod", Name: pod.name}
	}
	switch ref.Kind {
	case "ReplicaSet", "Job":
		if w, ok := ix.owners[ownerKey{ref.Kind, pod.namespace, ref.Name}]; ok {
			return w
		}
		if ref.Kind == "ReplicaSet" {
			if h := pod.label("pod-template-hash"); h != "" && strings.HasSuffix(ref.Name, "-"+h) {
				return Workload{Kind: "Deployment", Name: strings.TrimSuffix(ref.Name, "-"+h)}
			}
		}
	}
	return Workload{Kind: ref.Kind, Name: ref.Name}
}

// upsertOwner records what controls a ReplicaSet or Job (a Deployment, a
// CronJob, or nothing) and renames its pods when that changed.
func (ix *index) upsertOwner(kind string, meta *metav1.ObjectMeta) {
	w := Workload{Kind: kind, Name: meta.Name}
	if ref := metav1.GetControllerOfNoCopy(meta); ref != nil {
		w = Workload{Kind: ref.Kind, Name: ref.Name}
	}
	k := ownerKey{kind, meta.Namespace, meta.Name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.owners[k]; ok && old == w {
		return
	}
	ix.owners[k] = w
	ix.rebuildPodsLocked(func(p *podInfo) bool {
		return p.namespace == k.namespace && p.controller.Kind == k.kind && p.controller.Name == k.name
	})
}

func (ix *index) deleteOwner(kind, namespace, name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	delete(ix.owners, ownerKey{kind, namespace, name})
}
