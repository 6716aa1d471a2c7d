package kube

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// StopAPIServer stops kube-apiserver (an API outage); the rest of the cluster keeps running.
func (c *Cluster) StopAPIServer() error {
	p := c.proc("kube-apiserver")
	if p == nil {
		return fmt.Errorf("no kube-apiserver")
	}
	return p.stop(10 * time.Second)
}

// StartAPIServer starts kube-apiserver again with its old arguments and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	old := c.proc("kube-apiserver")
	if old == nil {
		return fmt.Errorf("no kube-apiserver")
	}
	if old.running() {
		return nil
	}
	p, err := old.restart()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.st.Procs = append(c.st.Procs, p)
	c.mu.Unlock()
	return c.waitAPIServer(ctx, 90*time.Second)
}

// HTTPGetIn fetches url from inside a lab namespace (an agent's metrics on a node's address,
// reachable without the apiserver).
func (c *Cluster) HTTPGetIn(ctx context.Context, ns, url string) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get %s in %s: %w", url, ns, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return string(b), nil
}
