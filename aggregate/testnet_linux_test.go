package aggregate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/netns"
)

// requireRoot skips privileged tests for unprivileged runs.
func requireRoot(t testing.TB) {
	t.Helper()
	testenv.Root(t, "loads BPF programs and creates network namespaces")
}

// testNode is the lab's bare node (netns.Bridge) in the shape these tests use.
type testNode struct {
	t    testing.TB
	node string // node netns name
	pods []*testPod
	br   *netns.Bridge
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

func uniquePrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "flt" + hex.EncodeToString(b[:])
}

// newTestNode builds the node namespace and n pods in 10.42.0.0/24 (the only subnet the lab's
// bridge uses); cleanup removes all of it even when the test fails half-way.
func newTestNode(t testing.TB, subnet string, n int) *testNode {
	t.Helper()
	require.Equal(t, "10.42.0", subnet, "netns.Bridge builds node1's pod /24")
	br, err := netns.NewBridge(context.Background(), uniquePrefix(), n)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, br.Close()) })
	tn := &testNode{t: t, node: br.Node.NetNS, br: br}
	for _, p := range br.Pods {
		tn.adopt(p)
	}
	return tn
}

func (tn *testNode) adopt(p *netns.Pod) *testPod {
	tp := &testPod{ns: p.NetNS, ip: p.IP.String(), veth: p.HostVeth, index: len(tn.pods)}
	tn.pods = append(tn.pods, tp)
	return tp
}

func (tn *testNode) addPod() *testPod {
	tn.t.Helper()
	p, err := tn.br.AddPod(context.Background())
	require.NoError(tn.t, err)
	return tn.adopt(p)
}

func (tn *testNode) exec(args ...string) string {
	tn.t.Helper()
	return run(tn.t, append([]string{"ip", "netns", "exec", tn.node}, args...)...)
}

// inNetns runs fn on a thread inside the named namespace. Sockets created
// by fn stay in that namespace.
func inNetns(t testing.TB, name string, fn func()) {
	t.Helper()
	require.NoError(t, netns.Do(name, func() error { fn(); return nil }))
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	require.NoError(t, err)
	return a
}
