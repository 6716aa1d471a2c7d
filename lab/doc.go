// Package lab builds, in network namespaces on one Linux machine, what a K3s node looks like to
// the datapath: a node namespace with a cni0 bridge (br_netfilter on), pod namespaces joined by
// veth<8 hex> peers, optionally a second node joined over Flannel-style VXLAN, kube-router-shaped
// NetworkPolicy filter rules and kube-proxy-shaped ClusterIP DNAT.
//
// The filter rules are written from the scenario's hand-written rule description in the shape of
// K3s's kube-router fork (v2.6.3-k3s1); they never come from flowlens's own policy engine, so the
// lab stays an independent enforcer to check that engine against.
//
// Nothing is created in the caller's network namespace: every link lives in a namespace the lab
// created, and every namespace name starts with the lab's prefix.
package lab
