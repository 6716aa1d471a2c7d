// Package deploy holds the Kubernetes manifests. Its Go side lets tests run
// the agent as deploy/base ships it (its arguments and environment), so the
// figures they print are the deployed agent's; its test keeps the
// PrometheusRule in step with the rules file promtool tests.
package deploy

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

//go:embed base/daemonset.yaml
var daemonSetYAML []byte

// AgentContainer is the DaemonSet's agent container.
func AgentContainer() (corev1.Container, error) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(daemonSetYAML, &ds); err != nil {
		return corev1.Container{}, fmt.Errorf("parsing base/daemonset.yaml: %w", err)
	}
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		return corev1.Container{}, fmt.Errorf("base/daemonset.yaml: %d containers, want the agent alone", n)
	}
	return ds.Spec.Template.Spec.Containers[0], nil
}

// GoMemLimit is the agent container's GOMEMLIMIT in bytes, parsed as the
// Go runtime does (a number with an optional B, KiB, MiB or GiB suffix).
func GoMemLimit(c corev1.Container) (int64, error) {
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		num, unit := e.Value, int64(1)
		for _, u := range []struct {
			suffix string
			scale  int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
			if n, ok := strings.CutSuffix(e.Value, u.suffix); ok {
				num, unit = n, u.scale
				break
			}
		}
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 {
			return 0, fmt.Errorf("GOMEMLIMIT %q: want a positive number of B, KiB, MiB or GiB", e.Value)
		}
		return v * unit, nil
	}
	return 0, fmt.Errorf("the agent container sets no GOMEMLIMIT")
}
