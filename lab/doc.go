// Package lab builds, in network namespaces on one Linux machine, what a K3s node looks like to
// the datapath: a node namespace with a cni0 bridge (br_netfilter on), pod namespaces joined by
// veth<8 hex> peers, optionally a second node joined over Flannel-style VXLAN, kube-router-shaped
// NetworkPolicy filter rules and kube-proxy-shaped ClusterIP DNAT.
//
// The filter rules are written from the scenario's hand-written rule description in the shape of
// K3s's kube-router fork (v2.6.3-k3s1); they never come from flowlens's own policy engine, so the
// lab stays an independent enforcer to check that engine against.
//
// The second enforcer (Config.Enforcer = EnforcerKubeRouter) is the real kube-router v2.1.0
// network-policy controller, one flowlens-kube-router process (lab/kuberouter, a test-only
// module of its own) per node namespace, fed the scenario's NetworkPolicies through client-go's
// fake clientset; the lab then writes only the nat table. HomelabScenario (examples/homelab)
// needs it: it has real NetworkPolicies and no hand-written rules.
//
// Nothing is created in the caller's network namespace: every link lives in a namespace the lab
// created, and every namespace name starts with the lab's prefix.
package lab
