// Package lab builds, in network namespaces on one Linux machine, what a K3s node looks like to
// the datapath, for a scenario's traffic to run through. It is the thin orchestrator that
// cmd/flowlens-lab and the e2e tests use; each concern lives in a package of its own:
//
//   - lab/netns: namespaces, the address plan, a node's cni0 bridge, pod veths and Flannel-style
//     VXLAN between two nodes, sockets opened in a pod;
//   - lab/scenario: the pods, services, NetworkPolicy intent and traffic cases (the default
//     scenario and examples/homelab), and the cluster and policy YAML;
//   - lab/rules: the hand enforcer's kube-router-shaped filter and kube-proxy-shaped nat tables;
//   - lab/enforcer: the real kube-router, behind the Enforcer interface declared here;
//   - lab/outside: the world outside the cluster, <prefix>-ext;
//   - lab/traffic: the scenario's traffic (servers, cases, the traffic loop) over a running Lab,
//     and the datapath benchmark harness.
//
// Up builds nodes, the outside world, pods, rules and the enforcer in that order and removes
// everything on failure; Close removes every namespace, which takes every link, rule and ipset
// with it. A real-cluster lab (etcd, apiserver and kubelet in the node namespace) is meant to be
// one more Enforcer.
//
// Nothing is created in the caller's network namespace: every link lives in a namespace the lab
// created, and every namespace name starts with the lab's prefix.
package lab
