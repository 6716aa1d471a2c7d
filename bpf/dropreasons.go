package bpf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// DropReasons names enum skb_drop_reason values. The numbering changes
// across kernel versions, so the table is read from the running kernel's BTF.
type DropReasons map[uint32]string

const dropReasonPrefix = "SKB_DROP_REASON_"

// LoadDropReasons reads enum skb_drop_reason from the running kernel's BTF
// (/sys/kernel/btf/vmlinux).
func LoadDropReasons() (DropReasons, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel btf: %w", err)
	}
	return DropReasonsFromSpec(spec)
}

// DropReasonsFromSpec reads enum skb_drop_reason from spec.
func DropReasonsFromSpec(spec *btf.Spec) (DropReasons, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, fmt.Errorf("find enum skb_drop_reason in btf: %w", err)
	}
	if len(enum.Values) == 0 {
		return nil, errors.New("enum skb_drop_reason in btf has no values")
	}
	out := make(DropReasons, len(enum.Values))
	for _, v := range enum.Values {
		out[uint32(v.Value)] = strings.TrimPrefix(v.Name, dropReasonPrefix)
	}
	return out, nil
}

// Name returns the reason's name without the SKB_DROP_REASON_ prefix, or
// the number when the kernel does not know it.
func (d DropReasons) Name(reason uint32) string {
	if n, ok := d[reason]; ok {
		return n
	}
	return strconv.FormatUint(uint64(reason), 10)
}
