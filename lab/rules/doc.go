// Package rules renders the hand enforcer's tables for one node from a scenario's hand-written
// rule description: kube-router-shaped ipsets and filter chains (in the shape of K3s's
// kube-router fork, v2.6.3-k3s1, with its chain and set name hashes), and kube-proxy-shaped
// ClusterIP DNAT plus Flannel's masquerade in the nat table. The output is text for
// `ipset restore` and `iptables-restore`; applying it is the lab's job.
//
// The rules never come from flowlens's own policy engine, so the lab stays an independent
// enforcer to check that engine against.
package rules
