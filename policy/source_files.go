package policy

import (
	"errors"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowlens/flowlens/manifest"
)

// LoadFiles reads the intended policy set from files or directories (see
// manifest.Load) and validates every policy, naming the file and document
// of each bad one: "policies/allow-dns.yaml doc 3: networkpolicy
// linkding/allow-dns: egress[0].to[0].ipBlock.cidr "10.0.0.0/33": invalid CIDR".
// Objects of other kinds in the files are decoded strictly and then ignored.
func LoadFiles(paths ...string) ([]networkingv1.NetworkPolicy, error) {
	objs, err := manifest.Load(paths...)
	if err != nil {
		return nil, err
	}
	if err := ValidateObjects(objs); err != nil {
		return nil, err
	}
	return objs.NetworkPolicies, nil
}

// ValidateObjects validates the NetworkPolicies of objs, prefixing each
// error with where the policy was read.
func ValidateObjects(objs *manifest.Objects) error {
	var errs []error
	for i := range objs.NetworkPolicies {
		np := &objs.NetworkPolicies[i]
		if err := Validate(np); err != nil {
			if where := objs.Where("NetworkPolicy", np.Namespace, np.Name); where != "" {
				err = fmt.Errorf("%s: %w", where, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
