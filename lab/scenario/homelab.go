package scenario

import (
	"fmt"
	"github.com/flowlens/flowlens/lab/netns"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/flowlens/flowlens/manifest"
)

// homelabNode2 are the namespaces whose pods LoadHomelab puts on node2 in a two-node lab, so that
// app -> database and Prometheus -> app cross nodes (egress decided on one node, ingress on the
// other).
var homelabNode2 = []string{"database", "monitoring"}

// HomelabDir is examples/homelab of the source tree this package was built from, or
// $FLOWLENS_HOMELAB_DIR when set.
func HomelabDir() (string, error) {
	if d := os.Getenv("FLOWLENS_HOMELAB_DIR"); d != "" {
		return d, nil
	}
	// The source tree (tests), then the working directory (the repository
	// root, where make demo runs a -trimpath binary with no source paths).
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", "examples", "homelab"))
	}
	candidates = append(candidates, filepath.Join("examples", "homelab"))
	for _, d := range candidates {
		if _, err := os.Stat(filepath.Join(d, "cluster.yaml")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("locate examples/homelab: not found in %v; run from the repository root or set FLOWLENS_HOMELAB_DIR", candidates)
}

// HomelabScenario is the seed's homelab (examples/homelab) on one node. It carries
// NetworkPolicies but no hand-written Rules: only the kube-router enforcer can run it.
func HomelabScenario() (*Scenario, error) {
	d, err := HomelabDir()
	if err != nil {
		return nil, err
	}
	return LoadHomelab(d, 1)
}

// homelabExpectation is one entry of expectations.yaml; the file is read loosely here (the
// policy package checks it strictly).
type homelabExpectation struct {
	Name     string `json:"name"`
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Allowed  *bool  `json:"allowed"`
}

// LoadHomelab builds a scenario from a homelab-style directory: cluster.yaml (namespaces, pods
// with labels and named containerPorts), network-policies/ and expectations.yaml. Pods keep their
// names and get lab addresses (10.42.0.10 on, in file order; with nodes=2, database and
// monitoring go to node2 at 10.42.1.10 on). Cases are the pod-to-pod TCP/UDP expectations;
// External.Cases are the ones with an end outside the cluster (run with Config.External), public
// addresses replaced by homelabStandIns. ICMP is left out. Every case's port is served by its
// destination pod.
func LoadHomelab(dir string, nodes int) (*Scenario, error) {
	if nodes != 1 && nodes != 2 {
		return nil, fmt.Errorf("homelab: nodes %d, want 1 or 2", nodes)
	}
	cluster, err := manifest.Load(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		return nil, fmt.Errorf("homelab: %w", err)
	}
	pols, err := manifest.Load(filepath.Join(dir, "network-policies"))
	if err != nil {
		return nil, fmt.Errorf("homelab: %w", err)
	}
	sc := &Scenario{Name: "homelab", Policies: pols.NetworkPolicies}
	for _, ns := range cluster.Namespaces {
		sc.Namespaces = append(sc.Namespaces, ns.Name)
	}
	index := homelabPods(sc, cluster.Pods, nodes)
	exps, err := readHomelabExpectations(filepath.Join(dir, "expectations.yaml"))
	if err != nil {
		return nil, err
	}
	sc.External = &External{NamedCIDRs: homelabNamedCIDRs, StandIns: homelabStandIns}
	if err := homelabCases(sc, exps, index); err != nil {
		return nil, err
	}
	if err := sc.Validate(nodes); err != nil {
		return nil, err
	}
	if err := sc.ValidateExternal(); err != nil {
		return nil, err
	}
	return sc, nil
}

// homelabPods adds cluster.yaml's pods to sc, addressed in their node's pod
// CIDR in file order, and returns each pod's index in sc.Pods by key.
func homelabPods(sc *Scenario, pods []corev1.Pod, nodes int) map[string]int {
	next := map[int]int{1: netns.FirstPodIP, 2: netns.FirstPodIP}
	index := map[string]int{}
	for _, p := range pods {
		node := 1
		if nodes == 2 && slices.Contains(homelabNode2, p.Namespace) {
			node = 2
		}
		base := netns.NodePodCIDR(node).Addr().As4()
		ip := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(next[node])})
		next[node]++
		spec := PodSpec{Namespace: p.Namespace, Name: p.Name, Node: node, IP: ip, Labels: p.Labels, Owner: podOwner(p)}
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				proto := string(cp.Protocol)
				if proto == "" {
					proto = "TCP"
				}
				spec.Ports = append(spec.Ports, Port{Name: cp.Name, Port: int(cp.ContainerPort), Protocol: proto})
			}
		}
		index[spec.Key()] = len(sc.Pods)
		sc.Pods = append(sc.Pods, spec)
	}
	return index
}

func readHomelabExpectations(path string) ([]homelabExpectation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("homelab: %w", err)
	}
	var exps []homelabExpectation
	if err := yaml.Unmarshal(b, &exps); err != nil {
		return nil, fmt.Errorf("homelab: %s: %w", path, err)
	}
	return exps, nil
}

// homelabCases turns the TCP and UDP expectations into cases: pod to pod
// ones into Cases (the receiving pod listens on the port when it does not
// declare it), the others into the outside world's cases.
func homelabCases(sc *Scenario, exps []homelabExpectation, index map[string]int) error {
	for i, x := range exps {
		proto := strings.ToUpper(x.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if proto != "TCP" && proto != "UDP" {
			continue
		}
		if x.Allowed == nil {
			return fmt.Errorf("homelab: expectations[%d] %q: allowed is required", i, x.Name)
		}
		if !strings.Contains(x.From, "/") || !strings.Contains(x.To, "/") {
			c, err := homelabExternalCase(x, proto, sc, index)
			if err != nil {
				return fmt.Errorf("homelab: expectations[%d] %q: %w", i, x.Name, err)
			}
			sc.External.Cases = append(sc.External.Cases, c)
			continue
		}
		fi, ok1 := index[x.From]
		ti, ok2 := index[x.To]
		if !ok1 || !ok2 {
			return fmt.Errorf("homelab: expectations[%d] %q: %s or %s is not a pod of cluster.yaml", i, x.Name, x.From, x.To)
		}
		to := &sc.Pods[ti]
		if !servesPort(*to, x.Port, proto) {
			to.Listen = append(to.Listen, Port{Port: x.Port, Protocol: proto})
		}
		sc.Cases = append(sc.Cases, Case{
			Name: x.Name, From: x.From, To: x.To, Protocol: proto, Port: x.Port, Count: 3,
			Allowed: *x.Allowed, Enforcer: netns.NodeName(sc.Pods[fi].Node),
		})
	}
	return nil
}

// homelabStandIns replaces the homelab's public "internet" address with a TEST-NET-3 one (lab
// traffic never goes to a public address, even inside a namespace). 203.0.113.7, the internet
// client, is TEST-NET-3 already; the private addresses (Proxmox, MinIO, the API servers, the LAN)
// are used as written, inside the outside namespace only. The policies' ipBlocks treat both the
// same way: 0.0.0.0/0 minus the private ranges.
var homelabStandIns = map[netip.Addr]netip.Addr{
	netip.MustParseAddr("1.1.1.1"): netip.MustParseAddr("203.0.113.10"),
}

// homelabNamedCIDRs are the names the agent gives the homelab's outside peers; the internet
// stand-ins and 172.16.0.5 stay WORLD.
var homelabNamedCIDRs = []NamedCIDR{
	{Name: "proxmox", Prefix: netip.MustParsePrefix("10.0.1.10/32")},
	{Name: "minio", Prefix: netip.MustParsePrefix("10.0.40.10/32")},
	{Name: "control-plane", Prefix: netip.MustParsePrefix("10.0.40.100/30")},
	{Name: "lan", Prefix: netip.MustParsePrefix("192.168.0.0/16")},
}

// homelabExternalCase turns an expectation with one end outside the cluster into an
// ExternalCase; an inbound case's port is served by its pod.
func homelabExternalCase(x homelabExpectation, proto string, sc *Scenario, index map[string]int) (ExternalCase, error) {
	podKey, outside, inbound := x.From, x.To, false
	if !strings.Contains(x.To, "/") {
		if !strings.Contains(x.From, "/") {
			return ExternalCase{}, fmt.Errorf("both ends (%s, %s) are outside the cluster", x.From, x.To)
		}
	} else {
		podKey, outside, inbound = x.To, x.From, true
	}
	pi, ok := index[podKey]
	if !ok {
		return ExternalCase{}, fmt.Errorf("%s is not a pod of cluster.yaml", podKey)
	}
	peer, err := outsideAddr(outside, homelabStandIns)
	if err != nil {
		return ExternalCase{}, err
	}
	written := ""
	if peer.String() != outside {
		written = outside
	}
	pod := &sc.Pods[pi]
	if inbound && !servesPort(*pod, x.Port, proto) {
		pod.Listen = append(pod.Listen, Port{Port: x.Port, Protocol: proto})
	}
	return ExternalCase{
		Name: x.Name, Pod: podKey, Peer: peer, Written: written, Inbound: inbound,
		Protocol: proto, Port: x.Port, Allowed: *x.Allowed, Enforcer: netns.NodeName(pod.Node),
	}, nil
}

func servesPort(p PodSpec, port int, proto string) bool {
	for _, x := range append(append([]Port(nil), p.Ports...), p.Listen...) {
		if x.Port == port && x.Protocol == proto {
			return true
		}
	}
	return false
}

func podOwner(p corev1.Pod) Owner {
	for _, o := range p.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return Owner{Kind: o.Kind, Name: o.Name}
		}
	}
	return Owner{}
}
