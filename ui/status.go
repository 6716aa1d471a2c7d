package ui

import (
	"context"
	"maps"
	"slices"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// agentStatus is what the page shows of one agent: its ServerStatus and
// whether the UI can reach it.
type agentStatus struct {
	Agent string `json:"agent"`
	State string `json:"state"` // connecting, ok, error
	Error string `json:"error,omitempty"`
	// StreamError is why the flow stream is down; it outlives status
	// polls that succeed, until the stream delivers again.
	StreamError string    `json:"streamError,omitempty"`
	Updated     time.Time `json:"updated,omitzero"`

	Node        string            `json:"node,omitempty"`
	Version     string            `json:"version,omitempty"`
	Kernel      string            `json:"kernel,omitempty"`
	UptimeSec   int64             `json:"uptimeSec,omitempty"`
	SeenFlows   uint64            `json:"seenFlows"`
	NumFlows    uint64            `json:"numFlows"`
	MaxFlows    uint64            `json:"maxFlows"`
	Interfaces  uint32            `json:"interfaces"`
	AttachModes map[string]string `json:"attachModes,omitempty"`
	Lost        []lostView        `json:"lost,omitempty"`
	Policy      string            `json:"policy,omitempty"`
	Enrichment  string            `json:"enrichment,omitempty"`
}

func (h *flowHub) pollStatus(ctx context.Context, s source) {
	t := time.NewTicker(h.statusEvery)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, h.statusEvery)
		st, err := s.client.ServerStatus(cctx, &flowlensv1.ServerStatusRequest{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.setStatus(s.name, st, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *flowHub) setStatus(agent string, st *flowlensv1.ServerStatusResponse, err error) {
	v := agentStatus{Agent: agent, Updated: time.Now()}
	if err != nil {
		v.Error = err.Error()
	} else {
		fillStatus(&v, st)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v.StreamError = h.status[agent].StreamError
	h.status[agent] = withState(v)
	h.statusGen++
}

// setStreamError records why agent's flow stream is down (nil: it is up).
func (h *flowHub) setStreamError(agent string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.status[agent]
	v.StreamError = ""
	if err != nil {
		v.StreamError = err.Error()
	}
	h.status[agent] = withState(v)
	h.statusGen++
}

func withState(v agentStatus) agentStatus {
	switch {
	case v.Error != "" || v.StreamError != "":
		v.State = "error"
	case v.Updated.IsZero():
		v.State = "connecting"
	default:
		v.State = "ok"
	}
	return v
}

func fillStatus(v *agentStatus, st *flowlensv1.ServerStatusResponse) {
	v.Node, v.Version, v.Kernel = st.GetNodeName(), st.GetVersion(), st.GetKernel()
	v.UptimeSec = int64(time.Duration(st.GetUptimeNs()) / time.Second)
	v.SeenFlows, v.NumFlows, v.MaxFlows = st.GetSeenFlows(), st.GetNumFlows(), st.GetMaxFlows()
	v.Interfaces = st.GetAttachedInterfaces()
	v.AttachModes = st.GetAttachModes()
	for _, le := range st.GetLostEvents() {
		v.Lost = append(v.Lost, lostView{Node: st.GetNodeName(), Source: le.GetSource().String(), Lost: le.GetNumEventsLost(), Time: le.GetLast().AsTime()})
	}
	v.Policy = joinState(st.GetPolicySource(), st.GetPolicyState())
	v.Enrichment = joinState(st.GetEnrichmentSource(), st.GetEnrichmentState())
}

func joinState(source, state string) string {
	switch {
	case state == "":
		return source
	case source == "":
		return state
	}
	return source + " (" + state + ")"
}

// statuses returns every agent's status, by name, and the generation they
// belong to.
func (h *flowHub) statuses() ([]agentStatus, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]agentStatus, 0, len(h.status))
	for _, k := range slices.Sorted(maps.Keys(h.status)) {
		out = append(out, h.status[k])
	}
	return out, h.statusGen
}
