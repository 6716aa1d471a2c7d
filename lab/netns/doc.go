// Package netns owns the lab's network namespaces and what is wired inside them: creating,
// entering and sweeping namespaces, running commands in them, per-namespace sysctls, the
// K3s-shaped address plan, and the topology of a node (cni0 bridge with br_netfilter, pod veths,
// Flannel-style VXLAN between two nodes). Sockets opened from a Pod stay in its namespace.
//
// It knows nothing of scenarios, rules or enforcers, so the bpf and e2e tests can build a bare
// node from it (NewBridge) without importing the rest of the lab.
//
// Nothing is created in the caller's network namespace: every link lives in a namespace created
// here, and every namespace name starts with the caller's prefix.
package netns
