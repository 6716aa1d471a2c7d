package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// The flow table and counters as aggregation reads them. The maps are
// safe to use from any goroutine while Watch runs, and closed once it
// returns.

// flowBatch is how many entries one batch lookup reads: a 65,536-entry table
// takes 64 system calls instead of two per entry (next key, lookup). Larger
// than any hash bucket, which the kernel requires of a batch.
const flowBatch = 1024

// IterateFlows calls fn with the raw key and value bytes of each flows-map
// entry; fn must not keep them. Entries created during the pass may be
// missed (the next pass sees them); none is seen twice.
func (c *Capture) IterateFlows(fn func(key, val []byte)) error {
	keys, vals := make([]FlowKey, flowBatch), make([]FlowStats, flowBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := c.objs.Flows.BatchLookup(&cursor, keys, vals, nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			return c.iterateFlowsOneByOne(fn)
		}
		for i := range n {
			fn(bytesOf(&keys[i]), bytesOf(&vals[i]))
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the end of the table
		}
		if err != nil {
			return fmt.Errorf("batch lookup flows: %w", err)
		}
	}
}

// iterateFlowsOneByOne is IterateFlows for kernels without batch operations.
func (c *Capture) iterateFlowsOneByOne(fn func(key, val []byte)) error {
	rawKey, rawVal := make([]byte, flowKeySize), make([]byte, flowStatsSize)
	it := c.objs.Flows.Iterate()
	for it.Next(&rawKey, &rawVal) {
		fn(rawKey, rawVal)
	}
	return it.Err()
}

// LookupFlow reads the counters of one flow.
func (c *Capture) LookupFlow(key *FlowKey, st *FlowStats) error {
	return c.objs.Flows.Lookup(key, st)
}

// DeleteFlows removes flows from the table, a batch per system call; one
// already gone (evicted meanwhile) is not an error.
func (c *Capture) DeleteFlows(keys []FlowKey) (err error) {
	if len(keys) == 0 {
		return nil
	}
	// However the deletion ends, hot slot entries cached before it may
	// name a deleted flow: prune_gen tells tc_from_pod not to trust them.
	defer func() { err = errors.Join(err, c.bumpPruneGen()) }()
	for len(keys) > 0 {
		n, err := c.objs.Flows.BatchDelete(keys, nil)
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			return c.deleteFlowsOneByOne(keys)
		case errors.Is(err, ebpf.ErrKeyNotExist):
			// The kernel stops at the first missing key: skip it.
			n++
		case err != nil:
			return fmt.Errorf("batch delete flows: %w", err)
		}
		keys = keys[min(n, len(keys)):]
	}
	return nil
}

// bumpPruneGen adds one to prune_gen (only user space writes it).
func (c *Capture) bumpPruneGen() error {
	var gen uint32
	if err := c.objs.PruneGen.Get(&gen); err != nil {
		return fmt.Errorf("read prune_gen: %w", err)
	}
	if err := c.objs.PruneGen.Set(gen + 1); err != nil {
		return fmt.Errorf("bump prune_gen: %w", err)
	}
	return nil
}

func (c *Capture) deleteFlowsOneByOne(keys []FlowKey) error {
	for i := range keys {
		if err := c.objs.Flows.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete flow: %w", err)
		}
	}
	return nil
}

// Counters returns the kernel's flows_created and ringbuf_lost totals.
func (c *Capture) Counters() (created, ringbufLost uint64, err error) {
	if err := c.objs.FlowsCreated.Get(&created); err != nil {
		return 0, 0, err
	}
	if err := c.objs.RingbufLost.Get(&ringbufLost); err != nil {
		return 0, 0, err
	}
	return created, ringbufLost, nil
}

// DropReason names a kernel drop reason (see DropReasons.Name).
func (c *Capture) DropReason(reason uint32) string { return c.reasons.Name(reason) }

// InterfaceName is the name of an interface of the capture's namespace as
// last seen by Watch, or "".
func (c *Capture) InterfaceName(index uint32) string {
	c.namesMu.RLock()
	defer c.namesMu.RUnlock()
	return c.ifNames[index]
}

func (c *Capture) setInterfaceName(index uint32, name string) {
	c.namesMu.Lock()
	defer c.namesMu.Unlock()
	if name == "" {
		delete(c.ifNames, index)
		return
	}
	c.ifNames[index] = name
}

// Inference reports whether accepted packets are inferred (no netfilter
// link is attached): decided by Watch as it attaches.
func (c *Capture) Inference() bool {
	return c.Status()[StatusAccepted] == acceptedInference
}

// Config is the effective configuration, defaults filled in.
func (c *Capture) Config() Config { return c.cfg }

// ProgramIDs are the kernel IDs of the loaded programs, so a check after
// Watch returned can find links still referencing them.
func (c *Capture) ProgramIDs() ([]ebpf.ProgramID, error) {
	var ids []ebpf.ProgramID
	for _, p := range []*ebpf.Program{c.objs.TcFromPod, c.objs.TcToPod, c.objs.NfAccept, c.objs.KfreeSkb} {
		info, err := p.Info()
		if err != nil {
			return nil, fmt.Errorf("program info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, errors.New("program info: the kernel gave no ID")
		}
		ids = append(ids, id)
	}
	return ids, nil
}
