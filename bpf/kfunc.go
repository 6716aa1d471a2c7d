package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// castToKernCtx is the kfunc the egress mode's tc programs read a packet's
// conntrack entry through.
const castToKernCtx = "bpf_cast_to_kern_ctx"

// kernelHasFunc reports whether the running kernel's BTF has a function
// (a kfunc) of that name.
func kernelHasFunc(name string) (bool, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, fmt.Errorf("load kernel btf: %w", err)
	}
	var fn *btf.Func
	switch err := spec.TypeByName(name, &fn); {
	case err == nil:
		return true, nil
	case errors.Is(err, btf.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("find %s in kernel btf: %w", name, err)
	}
}
