// Package cli is `flowlens policy`: offline NetworkPolicy evaluation over
// manifest files (no cluster, no root).
package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/manifest"
	"github.com/flowlens/flowlens/policy"
)

// NewCommand returns the `policy` command with its subcommands eval,
// explain, matrix and test. Output goes to stdout, diagnostics to stderr.
func NewCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Evaluate NetworkPolicies offline against a cluster state",
		Long: "Evaluate Kubernetes NetworkPolicies (networking.k8s.io/v1) offline.\n\n" +
			"--cluster holds Namespace and Pod objects (pods with status.podIP or status.podIPs),\n" +
			"--policies the NetworkPolicies; both take files or directories (recursive; .yaml,\n" +
			".yml, .json; multi-document; List kinds) and are read together, so objects may\n" +
			"live in either. Endpoints are \"namespace/pod\" or an IP; an IP that is no pod's is\n" +
			"outside the cluster.",
		SilenceUsage: true,
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.AddCommand(newEval(stdout), newExplain(stdout), newMatrix(stdout), newTest(stdout))
	return cmd
}

// inputs are the flags every subcommand shares.
type inputs struct {
	cluster, policies []string
	enforcer          string
}

func (in *inputs) register(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&in.cluster, "cluster", nil, "cluster state: Namespace and Pod manifests (file or directory, repeatable)")
	cmd.Flags().StringSliceVar(&in.policies, "policies", nil, "NetworkPolicy manifests (file or directory, repeatable)")
	cmd.Flags().StringVar(&in.enforcer, "enforcer", policy.EnforcerNetworkPolicy,
		"enforcer profile: what the enforcer does besides the spec, to predict what the cluster will do ("+strings.Join(policy.EnforcerNames(), ", ")+")")
	_ = cmd.MarkFlagRequired("cluster")
}

// engine loads the manifests and compiles them. Errors name the file and
// document of the offending object.
func (in *inputs) engine() (*policy.Engine, error) {
	en, err := policy.EnforcerByName(in.enforcer)
	if err != nil {
		return nil, fmt.Errorf("--enforcer: %w", err)
	}
	seen := map[string]bool{}
	var paths []string
	for _, p := range append(append([]string{}, in.cluster...), in.policies...) {
		if c := filepath.Clean(p); !seen[c] {
			seen[c] = true
			paths = append(paths, c)
		}
	}
	objs, err := manifest.Load(paths...)
	if err != nil {
		return nil, err
	}
	if err := policy.ValidateObjects(objs); err != nil {
		return nil, err
	}
	e, err := policy.Compile(policy.ClusterState{Namespaces: objs.Namespaces, Pods: objs.Pods, Nodes: objs.Nodes}, objs.NetworkPolicies)
	if err != nil {
		return nil, fmt.Errorf("compile policies: %w", err)
	}
	return e.WithEnforcer(en), nil
}

// parsePort reads "5432", "5432/TCP", "53/udp" or "ICMP".
func parsePort(s string) (uint16, corev1.Protocol, error) {
	num, proto, _ := strings.Cut(s, "/")
	if strings.EqualFold(num, "icmp") && proto == "" {
		return 0, policy.ProtocolICMP, nil
	}
	p, err := policy.ParseProtocol(proto)
	if err != nil {
		return 0, "", fmt.Errorf("--port %q: %w", s, err)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		if p == policy.ProtocolICMP && num == "" {
			return 0, p, nil
		}
		return 0, "", fmt.Errorf("--port %q: want PORT[/PROTOCOL] (1-65535, TCP, UDP, SCTP) or ICMP", s)
	}
	return uint16(n), p, nil
}
