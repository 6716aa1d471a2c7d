// Package enforcer owns the lab's second NetworkPolicy enforcer: the real kube-router v2.1.0
// network-policy controller, one flowlens-kube-router process (lab/kuberouter, a test-only
// module of its own) per node namespace, fed the scenario's NetworkPolicies through client-go's
// fake clientset. With it the lab writes only the nat table. HomelabScenario needs it: it has
// real NetworkPolicies and no hand-written rules.
//
// A real-cluster enforcer (etcd, apiserver and kubelet in the node namespace) would be one more
// type here satisfying the lab's Enforcer interface.
package enforcer
