package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/flowlens/flowlens/lab/scenario"
)

// ApplyScenario makes a lab scenario real through the API server: its namespaces, its pods
// (labpod serving every declared and extra port; addresses come from the CNI, not the
// scenario), its Services (with the scenario's ClusterIP) and its NetworkPolicies. Pods and
// cases of nodes the cluster does not have are left out; Scenario returns what is left.
func (c *Cluster) ApplyScenario(ctx context.Context, sc *scenario.Scenario) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	nodes := c.Nodes()
	sc = sc.WithNodes(len(nodes))
	for _, ns := range sc.Namespaces {
		if err := CreateNamespace(ctx, cs, ns, map[string]string{"kubernetes.io/metadata.name": ns}); err != nil {
			return err
		}
	}
	for _, p := range sc.Pods {
		lp := LabPod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Node: nodes[p.Node-1].Name}
		for _, port := range append(append([]scenario.Port(nil), p.Ports...), p.Listen...) {
			if strings.EqualFold(port.Protocol, "UDP") {
				lp.UDP = append(lp.UDP, port.Port)
			} else {
				lp.TCP = append(lp.TCP, port.Port)
			}
		}
		if _, err := CreatePod(ctx, cs, lp, 2*time.Minute); err != nil {
			return err
		}
	}
	for _, s := range sc.Services {
		if err := createScenarioService(ctx, cs, s); err != nil {
			return err
		}
	}
	for i := range sc.Policies {
		p := sc.Policies[i].DeepCopy()
		p.ResourceVersion = ""
		if _, err := cs.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create networkpolicy %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	if err := c.waitServices(ctx, cs, sc, time.Minute); err != nil {
		return err
	}
	c.mu.Lock()
	c.st.Scenario = sc
	c.mu.Unlock()
	return nil
}

// waitServices waits until every allowed case addressed to a Service connects: kube-proxy
// programs a new Service a moment after its EndpointSlice appears (at most its 1 s minimum
// sync period later), and traffic started before then timed out in the first round.
func (c *Cluster) waitServices(ctx context.Context, cs kubernetes.Interface, sc *scenario.Scenario, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, tc := range sc.Cases {
		if tc.Service == "" || !tc.Allowed {
			continue
		}
		for {
			r := c.RunCase(ctx, cs, tc)
			if r.OK() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s: not reachable from %s within %s (%v): %s", tc.Service, tc.From, timeout, r.Err, r.Output)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for service %s: %w", tc.Service, ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

func createScenarioService(ctx context.Context, cs kubernetes.Interface, s scenario.ServiceSpec) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name},
		Spec:       corev1.ServiceSpec{Selector: s.Selector},
	}
	if s.ClusterIP.IsValid() {
		svc.Spec.ClusterIP = s.ClusterIP.String()
	}
	for _, p := range s.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Port: int32(p.Port),
			TargetPort: intstr.FromInt32(int32(p.TargetPort)), Protocol: corev1.Protocol(strings.ToUpper(p.Protocol))})
	}
	if _, err := cs.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}
