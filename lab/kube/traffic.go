package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flowlens/flowlens/lab/scenario"
)

// CaseResult is one attempt of a scenario case between real pods.
type CaseResult struct {
	Case    scenario.Case
	Addr    string // where the client connected: a pod's CNI address or a ClusterIP, with the port
	Allowed bool
	Output  string // labpod's own words
	Err     error  // the attempt could not be made (no such pod, exec failed)
}

// OK reports whether the attempt matched the case's expectation.
func (r CaseResult) OK() bool { return r.Err == nil && r.Allowed == r.Case.Allowed }

// Scenario is the scenario ApplyScenario made real (nil before), with only the pods and cases
// the cluster's nodes can hold.
func (c *Cluster) Scenario() *scenario.Scenario {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Scenario
}

// RunCase runs one case once: labpod in the client pod connects (TCP) or sends a datagram and
// waits for its echo (UDP) through `kubectl exec`, to the server pod's address as the CNI gave
// it or to the Service's ClusterIP.
func (c *Cluster) RunCase(ctx context.Context, cs kubernetes.Interface, sc scenario.Case) CaseResult {
	res := CaseResult{Case: sc}
	ns, name, ok := strings.Cut(sc.From, "/")
	if !ok {
		res.Err = fmt.Errorf("case %s: from %q is not namespace/pod", sc.Name, sc.From)
		return res
	}
	host, err := caseHost(ctx, cs, sc)
	if err != nil {
		res.Err = fmt.Errorf("case %s: %w", sc.Name, err)
		return res
	}
	res.Addr = net.JoinHostPort(host, strconv.Itoa(sc.Port))
	res.Allowed, res.Output, res.Err = c.Connect(ctx, ns, name, strings.ToLower(sc.Protocol), res.Addr)
	res.Output = strings.TrimSpace(res.Output)
	return res
}

func caseHost(ctx context.Context, cs kubernetes.Interface, sc scenario.Case) (string, error) {
	if sc.Service != "" {
		ns, name, _ := strings.Cut(sc.Service, "/")
		svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("service %s: %w", sc.Service, err)
		}
		return svc.Spec.ClusterIP, nil
	}
	ns, name, _ := strings.Cut(sc.To, "/")
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("pod %s: %w", sc.To, err)
	}
	if p.Status.PodIP == "" {
		return "", fmt.Errorf("pod %s has no address", sc.To)
	}
	return p.Status.PodIP, nil
}

// RunTraffic runs every case of the applied scenario every ~2 s until ctx ends, logging each
// attempt and whether it was allowed, as `flowlens-lab traffic` does for the netns lab.
func (c *Cluster) RunTraffic(ctx context.Context, log *slog.Logger) error {
	sc := c.Scenario()
	if sc == nil {
		return errors.New("the cluster has no scenario applied")
	}
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for round := 1; ; round++ {
		for _, tc := range sc.Cases {
			if ctx.Err() != nil {
				return nil
			}
			r := c.RunCase(ctx, cs, tc)
			attrs := []any{"round", round, "case", tc.Name, "from", tc.From, "to", tc.To + tc.Service,
				"addr", r.Addr, "proto", tc.Protocol, "allowed", r.Allowed, "expected", tc.Allowed}
			switch {
			case r.Err != nil && ctx.Err() == nil:
				log.Warn("traffic: attempt failed", append(attrs, "err", r.Err, "output", r.Output)...)
			case r.OK():
				log.Info("traffic", attrs...)
			case ctx.Err() == nil:
				log.Warn("traffic: unexpected verdict", append(attrs, "output", r.Output)...)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
