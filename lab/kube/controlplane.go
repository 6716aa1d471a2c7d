package kube

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netns"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func apiserverURL() string {
	return "https://" + net.JoinHostPort(apiserverIP.String(), strconv.Itoa(apiPort))
}

// controlPlaneArgs are the four control-plane commands. Every component talks to the apiserver
// with the admin kubeconfig; etcd and the apiserver bind only inside the control-plane namespace.
func controlPlaneArgs(bins, dir string, p pki, kubeconfig string) map[string][]string {
	return map[string][]string{
		"etcd": {filepath.Join(bins, "etcd"),
			"--name=lab", "--data-dir=" + filepath.Join(dir, "etcd"),
			"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=lab=http://127.0.0.1:2380",
			"--unsafe-no-fsync", // a throwaway lab: durability buys nothing and costs seconds
		},
		"kube-apiserver": {filepath.Join(bins, "kube-apiserver"),
			"--etcd-servers=http://127.0.0.1:2379",
			"--bind-address=" + apiserverIP.String(), "--advertise-address=" + apiserverIP.String(),
			"--secure-port=" + strconv.Itoa(apiPort), "--cert-dir=" + filepath.Join(dir, "apiserver"),
			"--tls-cert-file=" + p.path(apiserverCert), "--tls-private-key-file=" + p.path(apiserverKey),
			"--client-ca-file=" + p.path(caCert),
			"--service-account-key-file=" + p.path(saKey), "--service-account-signing-key-file=" + p.path(saKey),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=" + serviceCIDR.String(),
			"--authorization-mode=RBAC", // what the agent's ServiceAccount may do is RBAC's answer
			"--allow-privileged=true",
			// The kubelet's hostname does not resolve here: logs, exec and port-forward go to its IP.
			"--kubelet-preferred-address-types=InternalIP",
			"--enable-priority-and-fairness=false", "--profiling=false",
		},
		"kube-controller-manager": {filepath.Join(bins, "kube-controller-manager"),
			"--kubeconfig=" + kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--service-account-private-key-file=" + p.path(saKey), "--root-ca-file=" + p.path(caCert),
			"--cluster-cidr=" + clusterCIDR.String(), "--service-cluster-ip-range=" + serviceCIDR.String(),
			"--use-service-account-credentials=false",
		},
		"kube-scheduler": {filepath.Join(bins, "kube-scheduler"),
			"--kubeconfig=" + kubeconfig, "--leader-elect=false", "--secure-port=0",
		},
	}
}

// RESTConfig is the admin kubeconfig with a dialer that opens its sockets inside the control-plane
// namespace, so this process reaches the apiserver without any address in its own namespace.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.st.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load lab kubeconfig: %w", err)
	}
	cp := c.st.CPNetNS
	cfg.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		return dialIn(ctx, cp, network, address)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// Clientset is a typed client on RESTConfig.
func (c *Cluster) Clientset() (kubernetes.Interface, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab clientset: %w", err)
	}
	return cs, nil
}

// dialIn connects from inside the named namespace: a socket keeps the namespace it was created in,
// so only the socket() call needs the switched thread.
func dialIn(ctx context.Context, ns, network, address string) (net.Conn, error) {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer target.Close()
	var conn net.Conn
	err = onThreadIn(target, func() error {
		var derr error
		conn, derr = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, address)
		return derr
	})
	return conn, err
}

// waitAPIServer polls /readyz until it answers ok or the timeout passes.
func (c *Cluster) waitAPIServer(ctx context.Context, timeout time.Duration) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	var last error
	err = poll(ctx, timeout, func(ctx context.Context) bool {
		if p := c.proc("kube-apiserver"); p != nil && !p.running() {
			last = fmt.Errorf("kube-apiserver exited: %s", p.tail(2000))
			return true
		}
		body, rerr := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if rerr != nil {
			last = rerr
			return false
		}
		last = nil
		return string(body) == "ok"
	})
	if last != nil {
		return fmt.Errorf("kube-apiserver not ready: %w", last)
	}
	return err
}

// poll calls ready every 250 ms until it returns true, the timeout passes or ctx ends.
func poll(ctx context.Context, timeout time.Duration, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if ready(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waited %s: %w", timeout, ctx.Err())
		case <-t.C:
		}
	}
}
