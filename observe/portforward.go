package observe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// AgentSelector selects the flowlens agent pods (the DaemonSet's label).
const AgentSelector = "app.kubernetes.io/name=flowlens"

// findAgentPods returns the running agent pods in namespace, one per node,
// sorted by node, restricted to nodes when given (names or globs, as --node).
// A node asked for by exact name that has no running agent is an error: the
// user would otherwise wait for flows that never come.
func findAgentPods(ctx context.Context, list listPods, namespace string, nodes []string) ([]corev1.Pod, error) {
	pods, err := list(ctx, namespace, metav1.ListOptions{LabelSelector: AgentSelector})
	if err != nil {
		return nil, fmt.Errorf("list agent pods in namespace %s: %w", namespace, err)
	}
	byNode := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
			continue
		}
		if len(nodes) > 0 && !slices.ContainsFunc(nodes, func(n string) bool {
			ok, _ := path.Match(n, p.Spec.NodeName)
			return ok
		}) {
			continue
		}
		if prev, dup := byNode[p.Spec.NodeName]; dup && prev.CreationTimestamp.After(p.CreationTimestamp.Time) {
			continue // during a rollout keep the newest pod of a node
		}
		byNode[p.Spec.NodeName] = p
	}
	for _, n := range nodes {
		if strings.ContainsAny(n, `*?[\`) {
			continue
		}
		if _, ok := byNode[n]; !ok {
			return nil, fmt.Errorf("no running flowlens agent pod on node %q in namespace %s (selector %s)", n, namespace, AgentSelector)
		}
	}
	if len(byNode) == 0 {
		return nil, fmt.Errorf("no running flowlens agent pods in namespace %s (selector %s)", namespace, AgentSelector)
	}
	out := make([]corev1.Pod, 0, len(byNode))
	for _, p := range byNode {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Spec.NodeName, b.Spec.NodeName) })
	return out, nil
}

// listPods lists the pods of a namespace.
type listPods func(ctx context.Context, namespace string, opts metav1.ListOptions) (*corev1.PodList, error)

// podsClient is a REST client for core/v1 pods alone: client-go's clientset
// would link and register every API group, a third of the CLI's size.
func podsClient(cfg *rest.Config) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	scheme.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Pod{}, &corev1.PodList{})
	metav1.AddToGroupVersion(scheme, corev1.SchemeGroupVersion)
	cfg = rest.CopyConfig(cfg)
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return rc, nil
}

// restPods lists pods through a podsClient.
type restPods struct{ *rest.RESTClient }

func (rc restPods) list(ctx context.Context, namespace string, opts metav1.ListOptions) (*corev1.PodList, error) {
	out := &corev1.PodList{}
	err := rc.Get().Namespace(namespace).Resource("pods").VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
	return out, err
}

// restConfig loads the kubeconfig the way kubectl does.
func restConfig(c *connFlags) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: c.kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// portForwardAgents port-forwards a local ephemeral port to each selected
// agent pod. stop ends every forward; it is safe to call on error.
func portForwardAgents(ctx context.Context, c *connFlags, nodes []string, log *slog.Logger) ([]target, func(), error) {
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	cfg, err := restConfig(c)
	if err != nil {
		return nil, stop, err
	}
	rc, err := podsClient(cfg)
	if err != nil {
		return nil, stop, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	pods, err := findAgentPods(ctx, restPods{rc}.list, c.kubeNamespace, nodes)
	if err != nil {
		return nil, stop, err
	}
	var targets []target
	for _, p := range pods {
		addr, s, err := forwardPod(ctx, cfg, rc, p, c.agentPort, log)
		if err != nil {
			return nil, stop, fmt.Errorf("port-forward to %s/%s on node %s: %w", p.Namespace, p.Name, p.Spec.NodeName, err)
		}
		stops = append(stops, s)
		targets = append(targets, target{node: p.Spec.NodeName, addr: addr})
	}
	return targets, stop, nil
}

// forwardPod is what `kubectl port-forward pod 0:port` does, over SPDY. It
// needs an API server, so it is exercised only against a real cluster.
func forwardPod(ctx context.Context, cfg *rest.Config, rc *rest.RESTClient, pod corev1.Pod, port int, log *slog.Logger) (string, func(), error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("spdy round tripper: %w", err)
	}
	url := rc.Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	stopCh, readyCh := make(chan struct{}), make(chan struct{})
	errOut := &logWriter{log: log, pod: pod.Name}
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stopCh, readyCh, io.Discard, errOut)
	if err != nil {
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	stop := func() { close(stopCh) }
	select {
	case <-readyCh:
	case err := <-errc:
		if err == nil {
			err = errors.New("port-forward ended before it was ready")
		}
		return "", nil, err
	case <-ctx.Done():
		stop()
		return "", nil, ctx.Err()
	}
	addr, err := localAddr(fw.GetPorts())
	if err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}

// localAddr is the local end of a ready forward. No port and no error is
// an error of its own (wrapping the nil would print "%!w(<nil>)").
func localAddr(ports []portforward.ForwardedPort, err error) (string, error) {
	if err == nil && len(ports) == 0 {
		err = errors.New("the forwarder reports no port")
	}
	if err != nil {
		return "", fmt.Errorf("local port of the forward: %w", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), nil
}

// logWriter turns the forwarder's error output into log records.
type logWriter struct {
	log *slog.Logger
	pod string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.log.Warn("port-forward", "pod", w.pod, "message", strings.TrimSpace(string(p)))
	return len(p), nil
}
