package policy

import (
	"cmp"
	"errors"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Set is a validated policy set reduced to what Compile needs (selectors,
// rules, ports), without the decoded objects: the agent keeps a Set to
// recompile whenever pods change. It is immutable and safe for concurrent
// use.
type Set struct {
	// policies are sorted by namespace/name: informers list in no
	// particular order, and explanations should not vary.
	policies []*parsed
}

// NewSet validates the policies. Invalid policies are reported together
// (errors.Join of *PolicyError); nothing is skipped.
func NewSet(policies []networkingv1.NetworkPolicy) (*Set, error) {
	s := &Set{policies: make([]*parsed, 0, len(policies))}
	var errs []error
	seen := map[string]bool{}
	for i := range policies {
		np := &policies[i]
		if k := np.Namespace + "/" + np.Name; seen[k] {
			errs = append(errs, &PolicyError{Namespace: np.Namespace, Name: np.Name, Err: errors.New("defined twice")})
			continue
		} else {
			seen[k] = true
		}
		p, err := parse(np)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.policies = append(s.policies, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.sharePeers()
	slices.SortFunc(s.policies, func(a, b *parsed) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name))
	})
	return s, nil
}

// sharePeers makes peers with the same selectors share one selector and
// memo key: policies repeat the same few namespace and pod selectors
// ("team: a", "tier: web"), and a kept Set holds each once. The binder
// already treats selectors with the same String as one.
func (s *Set) sharePeers() {
	sels := map[string]labels.Selector{}
	share := func(sel labels.Selector) labels.Selector {
		if sel == nil {
			return nil
		}
		k := sel.String()
		if c, ok := sels[k]; ok {
			return c
		}
		sels[k] = sel
		return sel
	}
	keys := map[string]string{}
	for _, p := range s.policies {
		for _, rules := range [][]parsedRule{p.ingress, p.egress} {
			for _, r := range rules {
				for i := range r.peers {
					pp := &r.peers[i]
					pp.nsSel, pp.podSel = share(pp.nsSel), share(pp.podSel)
					if k, ok := keys[pp.key]; ok {
						pp.key = k
					} else {
						keys[pp.key] = pp.key
					}
				}
			}
		}
	}
}

// Len is the number of policies.
func (s *Set) Len() int { return len(s.policies) }

// portNames are the named ports the rules refer to.
func (s *Set) portNames() map[string]bool {
	names := map[string]bool{}
	for _, p := range s.policies {
		for _, rules := range [][]parsedRule{p.ingress, p.egress} {
			for _, r := range rules {
				for _, pt := range r.ports {
					if pt.named != "" {
						names[pt.named] = true
					}
				}
			}
		}
	}
	return names
}
