package kube

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	labnetns "github.com/flowlens/flowlens/lab/netns"
)

// NodeState is one lab node: its namespace, address and the directories its containerd and
// kubelet own.
type NodeState struct {
	Name    string `json:"name"`
	Index   int    `json:"index"`
	NetNS   string `json:"netns"`
	IP      string `json:"ip"`
	PodCIDR string `json:"podCIDR"`
	Dir     string `json:"dir"`
}

// vtepNode is the node as lab/netns's VXLAN set-up takes it; its addressing is the same.
func (n NodeState) vtepNode() *labnetns.Node {
	return &labnetns.Node{Name: n.Name, NetNS: n.NetNS, IP: netip.MustParseAddr(n.IP), Index: n.Index}
}

func (n NodeState) containerdSock() string {
	return filepath.Join(n.Dir, "containerd", "containerd.sock")
}
func (n NodeState) cniConfDir() string { return filepath.Join(n.Dir, "cni", "net.d") }

// cniNetwork names the node's CNI network. It carries the lab prefix because libcni keeps its
// result cache in the machine-wide /var/lib/cni/results, named after the network.
func cniNetwork(prefix string, n NodeState) string { return prefix + "-" + n.Name + "-cbr0" }

// containerdConfig is containerd 1.6's CRI configuration for a node: every directory under the
// node's own, runc with cgroupfs (the machine's cgroups are hybrid v1, which crun refuses), and
// restrict_oom_score_adj, without which runc fails to set a pod's oom_score_adj below its own:
// CAP_SYS_RESOURCE is not in this sandbox's bounding set.
func containerdConfig(n NodeState, sandboxImage string) string {
	d := filepath.Join(n.Dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.containerdSock(), n.containerdSock()+".ttrpc",
		filepath.Join(d, "opt"), sandboxImage, n.cniConfDir())
}

// cniConflist is what Flannel's CNI plugin hands the bridge plugin on K3s: cni0 as the pods'
// gateway and default route, hairpin on, MTU 1450, host-local addresses from the node's /24 and a
// route to the cluster CIDR; then portmap. The IPAM data directory is the node's own.
func cniConflist(prefix string, n NodeState) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniNetwork(prefix, n),
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
				"hairpinMode": true, "forceAddress": true, "mtu": podMTU,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": n.PodCIDR}}},
					"routes":  []map[string]string{{"dst": clusterCIDR.String()}},
					"dataDir": filepath.Join(n.Dir, "cni", "ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode CNI config: %w", err)
	}
	return b, nil
}

// kubeletConfig is the KubeletConfiguration that starts on this machine
// (research/real-kubernetes-lab.md): cgroupfs without QoS cgroups or node-allocatable
// enforcement, no swap check, no local-storage isolation, no iptables util chains (kube-proxy and
// kube-router own iptables), anonymous + AlwaysAllow so the apiserver's port-forward and logs
// reach it without a client certificate.
func kubeletConfig(n NodeState) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
localStorageCapacityIsolation: false
makeIPTablesUtilChains: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "0%%", "nodefs.available": "0%%", "imagefs.available": "0%%", "nodefs.inodesFree": "0%%"}
nodeStatusUpdateFrequency: 4s
fileCheckFrequency: 5s
`, n.IP, n.containerdSock(), filepath.Join(n.Dir, "pod-logs"))
}

// writeNodeFiles writes a node's containerd, CNI and kubelet configuration.
func writeNodeFiles(prefix string, n NodeState, sandboxImage string) error {
	for _, d := range []string{filepath.Join(n.Dir, "containerd"), n.cniConfDir(), filepath.Join(n.Dir, "kubelet"), filepath.Join(n.Dir, "pod-logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	cni, err := cniConflist(prefix, n)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		filepath.Join(n.Dir, "containerd", "config.toml"):    []byte(containerdConfig(n, sandboxImage)),
		filepath.Join(n.cniConfDir(), "10-flannel.conflist"): cni,
		filepath.Join(n.Dir, "kubelet", "config.yaml"):       []byte(kubeletConfig(n)),
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// nodeArgs are a node's three daemons, in start order.
func nodeArgs(bins string, n NodeState, kubeconfig string) [][]string {
	return [][]string{
		{"containerd", "--config=" + filepath.Join(n.Dir, "containerd", "config.toml")},
		{filepath.Join(bins, "kubelet"),
			"--config=" + filepath.Join(n.Dir, "kubelet", "config.yaml"),
			"--kubeconfig=" + kubeconfig,
			"--root-dir=" + filepath.Join(n.Dir, "kubelet"),
			"--cert-dir=" + filepath.Join(n.Dir, "kubelet", "pki"), // the default is /var/lib/kubelet/pki
			"--hostname-override=" + n.Name, "--node-ip=" + n.IP,
		},
		{filepath.Join(bins, "kube-proxy"),
			"--kubeconfig=" + kubeconfig, "--hostname-override=" + n.Name,
			"--proxy-mode=iptables", "--cluster-cidr=" + clusterCIDR.String(),
			// 0 leaves the conntrack sysctls alone: they are not per network namespace.
			"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
			"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
		},
	}
}

func procName(daemon string, n NodeState) string { return filepath.Base(daemon) + "-" + n.Name }
