package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// LabPod describes a scenario pod: labpod serving its ports, on a node.
type LabPod struct {
	Namespace, Name string
	Labels          map[string]string
	Node            string   // "" = let the scheduler choose
	TCP, UDP        []int    // ports served
	Args            []string // labpod's arguments instead of serve (send 1s tcp ADDR, say)
}

// CreateNamespace creates a namespace with labels (idempotent).
func CreateNamespace(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// CreatePod creates the pod from LabPodImage and waits until it is Running with an IP.
func CreatePod(ctx context.Context, cs kubernetes.Interface, p LabPod, timeout time.Duration) (*corev1.Pod, error) {
	args := []string{"serve"}
	var ports []corev1.ContainerPort
	for proto, list := range map[corev1.Protocol][]int{corev1.ProtocolTCP: p.TCP, corev1.ProtocolUDP: p.UDP} {
		if len(list) == 0 {
			continue
		}
		s := make([]string, len(list))
		for i, port := range list {
			s[i] = strconv.Itoa(port)
			ports = append(ports, corev1.ContainerPort{ContainerPort: int32(port), Protocol: proto})
		}
		args = append(args, "--"+strings.ToLower(string(proto)), strings.Join(s, ","))
	}
	if len(p.Args) > 0 {
		args = p.Args
	}
	zero := int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      p.Node,
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name: "labpod", Image: LabPodImage, ImagePullPolicy: corev1.PullNever,
				Args: args, Ports: ports,
			}},
		},
	}
	if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return WaitPodRunning(ctx, cs, p.Namespace, p.Name, timeout)
}

// WaitPodRunning waits until the pod is Running, Ready and has an IP.
func WaitPodRunning(ctx context.Context, cs kubernetes.Interface, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	var got *corev1.Pod
	var last string
	err := poll(ctx, timeout, func(ctx context.Context) bool {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		got = p
		last = fmt.Sprintf("phase %s, conditions %v, statuses %v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && podReady(p)
	})
	if err != nil {
		return got, fmt.Errorf("pod %s/%s not running: %w (%s)", ns, name, err, last)
	}
	return got, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// CreateService creates a ClusterIP Service selecting labels, port -> targetPort over TCP.
func CreateService(ctx context.Context, cs kubernetes.Interface, ns, name string, selector map[string]string, port, targetPort int) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports: []corev1.ServicePort{{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: int32(port),
				TargetPort: intstr.FromInt32(int32(targetPort))}},
		},
	}
	out, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s/%s: %w", ns, name, err)
	}
	return out, nil
}

// Connect makes labpod in pod ns/name connect to addr (host:port) over proto through
// `kubectl exec`, as the scenario's client does; it reports whether the connection succeeded.
func (c *Cluster) Connect(ctx context.Context, ns, name, proto, addr string) (bool, string, error) {
	out, err := c.Kubectl(ctx, "-n", ns, "exec", name, "--", "/labpod", "connect", proto, addr)
	if err == nil {
		return true, out, nil
	}
	if strings.Contains(out, "labpod: ") { // labpod ran and reported the failure
		return false, out, nil
	}
	return false, out, err
}
