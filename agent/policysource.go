package agent

import (
	"context"
	"fmt"
	"log/slog"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/flowlens/flowlens/enrich"
	"github.com/flowlens/flowlens/policy"
	policysource "github.com/flowlens/flowlens/policy/source"
)

// newJudgeFromConfig picks where the intended set comes from: files win;
// otherwise the cluster's own set, from the API (client) or from the
// policies of --cluster-file (fileSet). It returns a nil judge when there is
// no set to judge by, and the goroutines that feed the judge (its own run
// loop included), for the agent's errgroup.
// A --policies set that does not load at start-up is an error: there is no
// last good set to keep yet.
func newJudgeFromConfig(cfg Config, log *slog.Logger, state enrich.ClusterState, client kubeAPI,
	fileSet []networkingv1.NetworkPolicy) (*policyJudge, []func(context.Context) error, error) {
	plog := log.With("component", "policy")
	// Validate checked the name.
	en, _ := policy.EnforcerByName(cfg.Enforcer)
	var (
		j   *policyJudge
		run []func(context.Context) error
	)
	switch {
	case cfg.Policies != "":
		j = newPolicyJudge(plog, "files:"+cfg.Policies, state)
		files := policysource.Files{Path: cfg.Policies, Every: cfg.PolicyReloadInterval, Log: plog}
		onLoad := j.setPolicies
		switch {
		case cfg.ClusterPolicies != "":
			// No API server: the enforcer's applied set is a file.
			j.drift = &policysource.Drift{}
			onLoad = func(p []networkingv1.NetworkPolicy) {
				j.setPolicies(p)
				j.drift.SetFiles(p)
			}
			applied := policysource.Files{Path: cfg.ClusterPolicies, Every: cfg.PolicyReloadInterval, Log: plog}
			run = append(run, func(ctx context.Context) error {
				return applied.Watch(ctx, j.drift.SetCluster, j.setError)
			})
		case client != nil:
			// Keep the cluster's set too, to say how it differs from the
			// files; both sides feed the drift so it never goes stale.
			j.drift = &policysource.Drift{}
			onLoad = func(p []networkingv1.NetworkPolicy) {
				j.setPolicies(p)
				j.drift.SetFiles(p)
			}
			run = append(run, func(ctx context.Context) error {
				return policysource.WatchCluster(ctx, networkPolicies(client), plog, j.drift.SetCluster)
			})
		}
		first, stamp, err := files.Load()
		if err != nil {
			return nil, nil, fmt.Errorf("--policies %s: %w", cfg.Policies, err)
		}
		plog.Info("intended policy set loaded", "path", cfg.Policies, "policies", len(first))
		onLoad(first)
		run = append(run, func(ctx context.Context) error { return files.WatchFrom(ctx, stamp, onLoad, j.setError) })
	case client != nil:
		j = newPolicyJudge(plog, "cluster", state)
		run = append(run, func(ctx context.Context) error {
			return policysource.WatchCluster(ctx, networkPolicies(client), plog, j.setPolicies)
		})
	case len(fileSet) > 0:
		j = newPolicyJudge(plog, "cluster-file:"+cfg.ClusterFile, state)
		j.setPolicies(fileSet)
	default:
		return nil, nil, nil
	}
	j.enforcer = en
	return j, append(run, j.run), nil
}

// networkPolicies lists and watches the cluster's NetworkPolicies.
func networkPolicies(client kubeAPI) cache.ListerWatcher {
	return client.ListWatch(networkingv1.SchemeGroupVersion, "networkpolicies")
}
