package ui

import (
	"slices"
	"time"
)

// edgeView is one map edge: the flows of one direction between two map
// nodes, on one port and protocol, with one verdict.
type edgeView struct {
	Key     string       `json:"key"`
	From    endpointView `json:"from"`
	To      endpointView `json:"to"`
	Proto   string       `json:"proto"`
	Port    uint32       `json:"port,omitempty"`
	Verdict string       `json:"verdict"`
	Flows   uint64       `json:"flows"`
	Packets uint64       `json:"packets,omitempty"`
	Bytes   uint64       `json:"bytes,omitempty"`
	// Mismatches counts flows where the kernel and the intended policy
	// disagree; MismatchKind is the last such disagreement.
	Mismatches   uint64    `json:"mismatches,omitempty"`
	MismatchKind string    `json:"mismatchKind,omitempty"`
	Last         time.Time `json:"last"`
	DropReason   string    `json:"dropReason,omitempty"`
	Why          *whyView  `json:"why,omitempty"`
}

// graph aggregates flows into edges and remembers which changed since the
// last flush, so a stream sends only what moved. Not safe for concurrent
// use: each stream owns one.
type graph struct {
	edges   map[string]*edgeView
	changed map[string]bool
}

func newGraph() *graph {
	return &graph{edges: map[string]*edgeView{}, changed: map[string]bool{}}
}

func (g *graph) add(f *flowView) {
	e := g.edges[f.Edge]
	if e == nil {
		from, to, port := f.Src, f.Dst, f.DstPort
		if f.Reply {
			from, to, port = to, from, f.SrcPort
		}
		// Pod-level detail belongs to flows; an edge joins workloads.
		from.Pod, from.IP, to.Pod, to.IP = "", "", "", ""
		e = &edgeView{Key: f.Edge, From: from, To: to, Proto: f.Proto, Port: port, Verdict: f.Verdict}
		g.edges[f.Edge] = e
	}
	e.Flows++
	e.Packets += f.Packets
	e.Bytes += f.Bytes
	if f.Mismatch != "" {
		e.Mismatches++
		e.MismatchKind = f.Mismatch
	}
	if !f.Time.Before(e.Last) {
		e.Last = f.Time
		if f.DropReason != "" {
			e.DropReason = f.DropReason
		}
		// A reply's explanation is about the reverse direction; keep the
		// request's.
		if f.Why != nil && (!f.Reply || e.Why == nil) {
			e.Why = f.Why
		}
	}
	g.changed[f.Edge] = true
}

// flush returns copies of the edges that changed since the last flush,
// ordered by key so output is stable.
func (g *graph) flush() []edgeView {
	out := make([]edgeView, 0, len(g.changed))
	for k := range g.changed {
		out = append(out, *g.edges[k])
	}
	clear(g.changed)
	slices.SortFunc(out, func(a, b edgeView) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out
}
