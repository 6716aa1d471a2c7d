package enrich

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func objKey(namespace, name string) string { return namespace + "/" + name }

// upsertPod indexes a pod's IPs. A pod in a terminal phase holds no IP any
// more (the kubelet may hand it to a new pod while the object lingers), and
// a hostNetwork pod's IPs are the node's and resolve to the node.
func (ix *index) upsertPod(pod *podInfo, now time.Time) {
	key := pod.key()
	ips := heldAddrs(pod)

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old, ok := ix.pods[key]; ok {
		ix.releasePodLocked(key, old.pod, ips, pod.hostNetwork, now)
	}
	st := podState{pod: pod}
	if pod.hostNetwork {
		nodeID := ix.nodeIdentityLocked(pod.nodeName())
		for _, ip := range ips {
			h := ix.hostIPs[ip]
			if h == nil {
				h = &hostAddr{}
				ix.hostIPs[ip] = h
			}
			if h.fromPods == nil {
				h.fromPods = map[podKey]*Identity{}
			}
			h.fromPods[key] = nodeID
		}
	} else if len(ips) > 0 {
		st.id = ix.podIdentityLocked(pod)
		for _, ip := range ips {
			ix.claimLocked(ip, st.id, now)
		}
	}
	ix.pods[key] = st
	ix.changed.Notify()
}

// releasePodLocked lets go of the IPs an older version of the pod held and
// the new version (keep, keepHost) does not.
func (ix *index) releasePodLocked(key podKey, old *podInfo, keep []netip.Addr, keepHost bool, now time.Time) {
	for _, ip := range heldAddrs(old) {
		if old.hostNetwork == keepHost && slices.Contains(keep, ip) {
			continue
		}
		if old.hostNetwork {
			ix.dropHostPodLocked(ip, key)
		} else {
			ix.releaseLocked(ip, key, now)
		}
	}
}

func (ix *index) deletePod(namespace, name string, now time.Time) {
	key := podKey{namespace, name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old, ok := ix.pods[key]
	if !ok {
		return
	}
	ix.releasePodLocked(key, old.pod, nil, false, now)
	delete(ix.pods, key)
	ix.changed.Notify()
}

// claimLocked gives ip to the pod id names. If another pod still holds it
// (its delete not seen yet, or a terminal pod's IP reused) the new pod
// takes it and the old one becomes the previous holder.
func (ix *index) claimLocked(ip netip.Addr, id *podIdent, now time.Time) {
	key := id.pod.key()
	s := ix.podIPs[ip]
	switch {
	case s.cur != nil && s.cur.pod.key() == key:
	case s.cur != nil:
		s.prev = &displaced{id: s.cur, until: now}
	case s.prev != nil && s.prev.id.pod.key() == key:
		// The same pod is back (an update after a missed delete): it never
		// really let go.
		s.prev = nil
	}
	s.cur = id
	ix.podIPs[ip] = s
}

func (ix *index) releaseLocked(ip netip.Addr, key podKey, now time.Time) {
	s, ok := ix.podIPs[ip]
	if !ok || s.cur == nil || s.cur.pod.key() != key {
		return
	}
	ix.podIPs[ip] = ipSlot{prev: &displaced{id: s.cur, until: now}}
}

func (ix *index) dropHostPodLocked(ip netip.Addr, key podKey) {
	h := ix.hostIPs[ip]
	if h == nil {
		return
	}
	delete(h.fromPods, key)
	if h.fromNode == nil && len(h.fromPods) == 0 {
		delete(ix.hostIPs, ip)
	}
}

// heldAddrs are the addresses the pod holds: none in a terminal phase,
// otherwise podAddrs.
func heldAddrs(pod *podInfo) []netip.Addr {
	if pod.phase == corev1.PodSucceeded || pod.phase == corev1.PodFailed {
		return nil
	}
	return podAddrs(pod)
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

func (ix *index) podIdentityLocked(pod *podInfo) *podIdent {
	id := &podIdent{pod: pod, ns: ix.namespaces[pod.namespace]}
	w := ix.workloadLocked(pod)
	if w.Kind == "Pod" {
		// A bare pod is a workload of its own: nothing to share.
		id.wl = newWorkloadInfo(w)
	} else {
		id.wl = ix.workloads.get(w, func() *workloadInfo { return newWorkloadInfo(w) })
	}
	return id
}

// rebuildPodsLocked refreshes the identities of the pods match selects,
// after their namespace's labels or their owner's controller changed.
func (ix *index) rebuildPodsLocked(match func(*podInfo) bool) {
	for key, st := range ix.pods {
		if st.id == nil || !match(st.pod) {
			continue
		}
		st.id = ix.podIdentityLocked(st.pod)
		ix.pods[key] = st
		for _, ip := range heldAddrs(st.pod) {
			if s, ok := ix.podIPs[ip]; ok && s.cur != nil && s.cur.pod.key() == key {
				s.cur = st.id
				ix.podIPs[ip] = s
			}
		}
	}
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
func (ix *index) upsertOwner(kind string, o *ownerInfo) {
	w := o.controller
	if w.Kind == "" {
		w = Workload{Kind: kind, Name: o.name}
	}
	k := ownerKey{kind, o.namespace, o.name}
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
