// Package kube runs a real Kubernetes cluster inside the lab's network namespaces: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler in a control-plane namespace, and on
// each node namespace containerd (runc, the CNI bridge plugin making cni0 and veth* as Flannel's
// CNI does on K3s), a kubelet and kube-proxy in iptables mode. The Kubernetes binaries come from
// the test-only module lab/kubernetes (this package only execs them, so the product's go.mod
// stays clean); images are built FROM scratch with podman and imported into containerd.
//
// Nothing listens outside the lab: the apiserver binds 192.0.2.254 inside <prefix>-cp, reached
// from this process through a dialer that opens its sockets in that namespace (RESTConfig) and
// from commands through ExecIn. Close removes every process, mount, namespace and file the
// cluster made (research/real-kubernetes-lab.md lists what a node leaves otherwise).
package kube
