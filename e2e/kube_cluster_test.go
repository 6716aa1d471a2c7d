//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flowlens/flowlens/lab/kube"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// kubeEnv is one real cluster with flowlens installed from deploy/base, shared by the subtests of
// TestKubeCluster (bringing a cluster up costs about a minute).
type kubeEnv struct {
	c  *kube.Cluster
	cs kubernetes.Interface
}

// startKube builds (or takes from the cache) the Kubernetes binaries, brings a one-node cluster up,
// builds the agent image and installs flowlens; cleanup takes it down and checks nothing is left.
func startKube(t *testing.T) *kubeEnv {
	t.Helper()
	requireRoot(t)
	for _, cmd := range []string{"containerd", "runc", "ctr", "podman", "nsenter", "iptables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			t.Fatalf("%s is not installed: run make deps", cmd)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Fatal("the CNI bridge plugin is not installed (containernetworking-plugins): run make deps")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	binDir, err := kube.EnsureBinaries(ctx, log)
	require.NoError(t, err)

	b := make([]byte, 2)
	_, _ = rand.Read(b)
	prefix := "fk" + hex.EncodeToString(b)
	prefixes.Lock()
	prefixes.list = append(prefixes.list, prefix)
	prefixes.Unlock()
	dir, err := os.MkdirTemp("", "flowlens-kube-")
	require.NoError(t, err)

	c, err := kube.Up(ctx, kube.Config{Prefix: prefix, Dir: dir, BinDir: binDir, Log: log})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			dumpKubeLogs(t, c)
		}
		st := c.State()
		podNS, err := c.PodNetNS(context.Background())
		assert.NoError(t, err)
		require.NoError(t, c.Close())
		assertClusterGone(t, st, podNS)
	})
	archive := filepath.Join(dir, "images", "flowlens.tar")
	require.NoError(t, kube.BuildAgentImage(ctx, archive))
	require.NoError(t, c.InstallFlowlens(ctx, archive))
	cs, err := c.Clientset()
	require.NoError(t, err)
	return &kubeEnv{c: c, cs: cs}
}

// assertClusterGone checks what Close promises: no process, namespace (the lab's and the pods'
// that containerd made, podNS), mount or directory left.
func assertClusterGone(t *testing.T, st kube.State, podNS []string) {
	for _, p := range st.Procs {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID))
		if err == nil {
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID))
			assert.NotEqual(t, p.Exe, exe, "%s (pid %d) still running", p.Name, p.PID)
		}
	}
	for _, ns := range st.NetNS {
		assert.NoFileExists(t, "/run/netns/"+ns)
	}
	for _, ns := range podNS {
		assert.NoFileExists(t, ns, "pod netns left behind")
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(mounts), st.Dir, "mounts left under the cluster directory")
	assert.NoDirExists(t, st.Dir)
}

// dumpKubeLogs prints the tail of every daemon's log when a test failed.
func dumpKubeLogs(t *testing.T, c *kube.Cluster) {
	for _, p := range c.State().Procs {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			continue
		}
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s (%s)\n%s", p.Name, p.Log, b)
	}
	// The agents' own logs, from the kubelet's pod log directory (no apiserver needed).
	for _, n := range c.Nodes() {
		logs, _ := filepath.Glob(filepath.Join(n.Dir, "pod-logs", "flowlens_*", "*", "*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				t.Logf("--- agent %s\n%s", l, b[max(0, len(b)-4000):])
			}
		}
	}
	if out, err := c.Kubectl(context.Background(), "get", "pods", "-A", "-o", "wide"); err == nil {
		t.Logf("--- pods\n%s", out)
	}
}

// observe runs `flowlens observe -P --kubeconfig K --last n -o json` inside the control-plane
// namespace (where the apiserver's address is reachable) and returns the flows it printed.
func (e *kubeEnv) observe(t *testing.T, n int, extra ...string) []*flowlensv1.Flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{bins.cli, "observe", "-P", "--kubeconfig", e.c.Kubeconfig(),
		"--last", fmt.Sprint(n), "-o", "json"}, extra...)
	out, err := e.c.ExecIn(ctx, e.c.ControlPlaneNetNS(), argv...)
	require.NoError(t, err, out)
	var flows []*flowlensv1.Flow
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r flowlensv1.GetFlowsResponse
		if !strings.HasPrefix(sc.Text(), "{") {
			continue // port-forward chatter
		}
		require.NoError(t, protojson.Unmarshal(sc.Bytes(), &r), sc.Text())
		if f := r.GetFlow(); f != nil {
			flows = append(flows, f)
		}
	}
	return flows
}

// waitFlow polls observe until a flow matches, and returns it.
func (e *kubeEnv) waitFlow(t *testing.T, what string, timeout time.Duration, match func(*flowlensv1.Flow) bool) *flowlensv1.Flow {
	t.Helper()
	f, _ := e.findFlow(t, timeout, match)
	if f == nil {
		t.Fatalf("no flow %s within %s", what, timeout)
	}
	return f
}

// findFlow polls observe until a flow matches or timeout passes; it returns the match (nil at
// the timeout) and the flows observe printed last.
func (e *kubeEnv) findFlow(t *testing.T, timeout time.Duration, match func(*flowlensv1.Flow) bool) (*flowlensv1.Flow, []*flowlensv1.Flow) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		flows := e.observe(t, 2000)
		for _, f := range flows {
			if match(f) {
				return f, flows
			}
		}
		if time.Now().After(deadline) {
			return nil, flows
		}
		time.Sleep(2 * time.Second)
	}
}

func podFlow(srcNS, src, dstNS, dst string, port uint32) func(*flowlensv1.Flow) bool {
	return func(f *flowlensv1.Flow) bool {
		return f.GetSource().GetNamespace() == srcNS && f.GetSource().GetPodName() == src &&
			f.GetDestination().GetNamespace() == dstNS && f.GetDestination().GetPodName() == dst &&
			f.GetL4().GetTcp().GetDestinationPort() == port
	}
}

func TestKubeCluster(t *testing.T) {
	e := startKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	t.Run("DaemonSetPodReadyOnEveryNode", func(t *testing.T) {
		pods, err := e.cs.CoreV1().Pods("flowlens").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=flowlens"})
		require.NoError(t, err)
		onNode := map[string]bool{}
		for _, p := range pods.Items {
			assert.Equal(t, corev1.PodRunning, p.Status.Phase, p.Name)
			assert.True(t, isReady(&p), "%s not Ready", p.Name)
			assert.Equal(t, "flowlens", p.Spec.ServiceAccountName)
			assert.Equal(t, kube.AgentImage, p.Spec.Containers[0].Image)
			onNode[p.Spec.NodeName] = true
		}
		for _, n := range e.c.Nodes() {
			assert.True(t, onNode[n.Name], "no agent pod on %s", n.Name)
		}
	})

	require.NoError(t, kube.CreateNamespace(ctx, e.cs, "demo", map[string]string{"team": "demo"}))
	backend, err := kube.CreatePod(ctx, e.cs, kube.LabPod{Namespace: "demo", Name: "backend",
		Labels: map[string]string{"app": "backend"}, TCP: []int{8080, 9090}}, 2*time.Minute)
	require.NoError(t, err)
	_, err = kube.CreatePod(ctx, e.cs, kube.LabPod{Namespace: "demo", Name: "frontend",
		Labels: map[string]string{"app": "frontend"}}, 2*time.Minute)
	require.NoError(t, err)

	t.Run("FlowsNamedByInformers", func(t *testing.T) {
		// Both pods were created after the agent started: only its informers can name them.
		ok, out, err := e.c.Connect(ctx, "demo", "frontend", "tcp", backend.Status.PodIP+":8080")
		require.NoError(t, err, out)
		require.True(t, ok, out)
		f := e.waitFlow(t, "demo/frontend -> demo/backend:8080", 45*time.Second, podFlow("demo", "frontend", "demo", "backend", 8080))
		assert.Equal(t, flowlensv1.Verdict_FORWARDED, f.GetVerdict())
		assert.Equal(t, "node1", f.GetNodeName())
	})

	t.Run("ClusterIPThroughKubeProxy", func(t *testing.T) {
		svc, err := kube.CreateService(ctx, e.cs, "demo", "backend", map[string]string{"app": "backend"}, 80, 9090)
		require.NoError(t, err)
		var out string
		// kube-proxy writes the Service's rules a moment after it exists.
		require.Eventually(t, func() bool {
			var ok bool
			ok, out, _ = e.c.Connect(ctx, "demo", "frontend", "tcp", svc.Spec.ClusterIP+":80")
			return ok
		}, 30*time.Second, time.Second, out)
		// The design promise: pod -> ClusterIP reports the service and the backend pod behind it.
		f := e.waitFlow(t, "demo/frontend -> service demo/backend, pod demo/backend", 45*time.Second, func(f *flowlensv1.Flow) bool {
			return f.GetSource().GetPodName() == "frontend" && f.GetDestinationService().GetName() == "backend" &&
				f.GetDestination().GetPodName() == "backend"
		})
		assert.Equal(t, "demo", f.GetDestinationService().GetNamespace())
	})

	t.Run("DeletedPodStillNamed", func(t *testing.T) {
		leaver, err := kube.CreatePod(ctx, e.cs, kube.LabPod{Namespace: "demo", Name: "leaver",
			Labels: map[string]string{"app": "leaver"}}, 2*time.Minute)
		require.NoError(t, err)
		ok, out, err := e.c.Connect(ctx, "demo", "leaver", "tcp", backend.Status.PodIP+":8080")
		require.NoError(t, err, out)
		require.True(t, ok, out)
		require.NoError(t, e.cs.CoreV1().Pods("demo").Delete(ctx, "leaver", metav1.DeleteOptions{}))
		// The agent flushes every 5 s, so the flow is almost always reported after the delete:
		// the deleted pod's grace period keeps its name.
		f := e.waitFlow(t, "demo/leaver -> demo/backend:8080", 45*time.Second, podFlow("demo", "leaver", "demo", "backend", 8080))
		assert.Equal(t, leaver.Status.PodIP, f.GetIp().GetSource())
	})

	_, err = kube.CreatePod(ctx, e.cs, kube.LabPod{Namespace: "demo", Name: "intruder",
		Labels: map[string]string{"app": "intruder"}}, 2*time.Minute)
	require.NoError(t, err)
	t.Run("StatusPortForward", func(t *testing.T) { testStatusPortForward(t, e) })
	t.Run("ServiceAccountReadOnly", func(t *testing.T) { testServiceAccountReadOnly(t, e) })
	t.Run("PolicyFromCluster", func(t *testing.T) { testPolicyFromCluster(t, e, backend.Status.PodIP) })
	t.Run("APIOutage", func(t *testing.T) { testAPIOutage(t, e, backend.Status.PodIP) })
	t.Run("AgentRestart", func(t *testing.T) { testAgentRestart(t, e, backend.Status.PodIP) })
	t.Run("Capabilities", func(t *testing.T) { testCapabilities(t, e) })
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
