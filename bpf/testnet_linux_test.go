package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
)

// requireRoot skips privileged tests for unprivileged runs.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and creates network namespaces")
	}
}

// testNode is a small K3s-node-like topology: a node namespace with a
// bridge (br_netfilter on) and pod namespaces attached by veths.
type testNode struct {
	t      testing.TB
	prefix string
	node   string // node netns name
	pods   []*testPod
	// subnet is the first three octets of the pod /24, e.g. "10.42.0".
	subnet string
}

type testPod struct {
	ns    string // netns name
	ip    string
	veth  string // host-side name in the node namespace
	index int
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func runQuiet(args ...string) {
	_ = exec.Command(args[0], args[1:]...).Run()
}

func uniquePrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "flt" + hex.EncodeToString(b[:])
}

// newTestNode builds the node namespace and n pods; cleanup removes all of
// it even when the test fails half-way.
func newTestNode(t testing.TB, subnet string, n int) *testNode {
	t.Helper()
	p := uniquePrefix()
	tn := &testNode{t: t, prefix: p, node: p + "-node", subnet: subnet}
	t.Cleanup(tn.destroy)
	run(t, "ip", "netns", "add", tn.node)
	tn.exec("ip", "link", "set", "lo", "up")
	tn.exec("ip", "link", "add", "cni0", "type", "bridge")
	tn.exec("ip", "addr", "add", subnet+".1/24", "dev", "cni0")
	tn.exec("ip", "link", "set", "cni0", "up")
	tn.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
	runQuiet("modprobe", "br_netfilter")
	tn.exec("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
	for i := 0; i < n; i++ {
		tn.addPod()
	}
	return tn
}

func (tn *testNode) exec(args ...string) string {
	tn.t.Helper()
	return run(tn.t, append([]string{"ip", "netns", "exec", tn.node}, args...)...)
}

func (tn *testNode) addPod() *testPod {
	tn.t.Helper()
	i := len(tn.pods)
	pod := &testPod{
		ns:    fmt.Sprintf("%s-p%d", tn.prefix, i),
		ip:    fmt.Sprintf("%s.%d", tn.subnet, 10+i),
		veth:  fmt.Sprintf("veth%s%02x", tn.prefix[3:], i),
		index: i,
	}
	run(tn.t, "ip", "netns", "add", pod.ns)
	tn.pods = append(tn.pods, pod)
	tn.exec("ip", "link", "add", pod.veth, "type", "veth", "peer", "name", "eth0", "netns", pod.ns)
	tn.exec("ip", "link", "set", pod.veth, "master", "cni0", "up")
	run(tn.t, "ip", "-n", pod.ns, "link", "set", "lo", "up")
	run(tn.t, "ip", "-n", pod.ns, "addr", "add", pod.ip+"/24", "dev", "eth0")
	run(tn.t, "ip", "-n", pod.ns, "link", "set", "eth0", "up")
	run(tn.t, "ip", "-n", pod.ns, "route", "add", "default", "via", tn.subnet+".1")
	return pod
}

func (tn *testNode) destroy() {
	for _, p := range tn.pods {
		runQuiet("ip", "netns", "del", p.ns)
	}
	runQuiet("ip", "netns", "del", tn.node)
}

// inNetns runs fn on a thread inside the named namespace. Sockets created
// by fn stay in that namespace.
func inNetns(t testing.TB, name string, fn func()) {
	t.Helper()
	target, err := netns.GetFromName(name)
	require.NoError(t, err)
	defer target.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	require.NoError(t, err)
	defer orig.Close()
	require.NoError(t, netns.Set(target))
	defer func() { require.NoError(t, netns.Set(orig)) }()
	fn()
}
