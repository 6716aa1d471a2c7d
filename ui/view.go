package ui

import (
	"strconv"
	"strings"
	"time"

	"github.com/flowlens/flowlens/observe"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// The JSON shapes the page reads. They are flat on purpose: the page draws
// them without knowing the protobuf API.

// endpointView is one end of a flow as a map node.
type endpointView struct {
	// ID names the map node: "ns/workload" for pods, "world", "cidr:NAME",
	// "host:NODE"; flows of the pods of one workload share a node.
	ID    string `json:"id"`
	Group string `json:"group"` // namespace, or "outside"/"nodes"
	Label string `json:"label"`
	Kind  string `json:"kind"`
	Pod   string `json:"pod,omitempty"` // "ns/pod"
	IP    string `json:"ip,omitempty"`
}

// whyView is the policy explanation of a flow.
type whyView struct {
	Intended string    `json:"intended,omitempty"`
	Summary  string    `json:"summary,omitempty"`
	Source   string    `json:"source,omitempty"`
	Egress   *sideView `json:"egress,omitempty"`
	Ingress  *sideView `json:"ingress,omitempty"`
}

type sideView struct {
	Applicable bool     `json:"applicable"`
	Isolated   bool     `json:"isolated"`
	Allowed    bool     `json:"allowed"`
	IsolatedBy []string `json:"isolatedBy,omitempty"`
	AllowedBy  []string `json:"allowedBy,omitempty"`
}

// flowView is one flow as a table row.
type flowView struct {
	ID         string       `json:"id"`
	Time       time.Time    `json:"time"`
	Node       string       `json:"node,omitempty"`
	Verdict    string       `json:"verdict"`
	DropReason string       `json:"dropReason,omitempty"`
	Mismatch   string       `json:"mismatch,omitempty"`
	Proto      string       `json:"proto"`
	Src        endpointView `json:"src"`
	Dst        endpointView `json:"dst"`
	SrcPort    uint32       `json:"srcPort,omitempty"`
	DstPort    uint32       `json:"dstPort,omitempty"`
	Service    string       `json:"service,omitempty"`
	Reply      bool         `json:"reply,omitempty"`
	Packets    uint64       `json:"packets,omitempty"`
	Bytes      uint64       `json:"bytes,omitempty"`
	// Attempts is aggregated_attempts: the row sums dropped connection
	// attempts from every source port (SrcPort is 0).
	Attempts uint64   `json:"attempts,omitempty"`
	Edge     string   `json:"edge"`
	Why      *whyView `json:"why,omitempty"`
}

// lostView is a lost-events record: loss is shown, never hidden.
type lostView struct {
	Node   string    `json:"node,omitempty"`
	Source string    `json:"source"`
	Lost   uint64    `json:"lost"`
	Time   time.Time `json:"time"`
}

func newFlowView(fl *flowlensv1.Flow, n uint64) flowView {
	sp, dp := observe.Ports(fl)
	v := flowView{
		ID:         fl.GetUuid(),
		Time:       fl.GetTime().AsTime(),
		Node:       fl.GetNodeName(),
		Verdict:    fl.GetVerdict().String(),
		DropReason: fl.GetDropReason(),
		Proto:      protocol(fl),
		Src:        endpointOf(fl.GetSource(), fl.GetIp().GetSource()),
		Dst:        endpointOf(fl.GetDestination(), fl.GetIp().GetDestination()),
		SrcPort:    sp,
		DstPort:    dp,
		Reply:      fl.GetIsReply(),
		Packets:    fl.GetCounters().GetPackets(),
		Bytes:      fl.GetCounters().GetBytes(),
		Attempts:   fl.GetAggregatedAttempts(),
		Why:        whyOf(fl.GetPolicy()),
	}
	if v.ID == "" {
		v.ID = "f" + strconv.FormatUint(n, 10)
	}
	if svc := fl.GetDestinationService(); svc.GetName() != "" {
		v.Service = svc.GetNamespace() + "/" + svc.GetName()
	}
	if m := fl.GetPolicy().GetMismatch(); isMismatch(m) {
		v.Mismatch = m.String()
	}
	v.Edge = edgeKeyOf(&v)
	return v
}

func isMismatch(m flowlensv1.Mismatch) bool {
	return m == flowlensv1.Mismatch_UNEXPECTED_DROP || m == flowlensv1.Mismatch_UNEXPECTED_ALLOW
}

// edgeKeyOf names the map edge a flow counts on: one per direction, port,
// protocol and verdict. A reply counts on the edge of its request, so the
// map shows who started the conversation.
func edgeKeyOf(v *flowView) string {
	from, to, port := v.Src.ID, v.Dst.ID, v.DstPort
	if v.Reply {
		from, to, port = to, from, v.SrcPort
	}
	return from + ">" + to + " " + portText(v.Proto, port) + " " + v.Verdict
}

func portText(proto string, port uint32) string {
	if port == 0 {
		return proto
	}
	return strconv.FormatUint(uint64(port), 10) + "/" + proto
}

func protocol(fl *flowlensv1.Flow) string {
	l4 := fl.GetL4()
	switch {
	case l4.GetTcp() != nil:
		return "TCP"
	case l4.GetUdp() != nil:
		return "UDP"
	case l4.GetSctp() != nil:
		return "SCTP"
	case l4.GetIcmpv4() != nil, l4.GetIcmpv6() != nil:
		return "ICMP"
	}
	return "IP"
}

// endpointOf places an endpoint on the map: pods by workload in their
// namespace, outside peers by named CIDR or as "world", nodes by name.
func endpointOf(ep *flowlensv1.Endpoint, ip string) endpointView {
	v := endpointView{Kind: strings.ToLower(ep.GetKind().String()), IP: ip}
	if ep.GetKind() == flowlensv1.EndpointKind_ENDPOINT_KIND_UNSPECIFIED {
		v.Kind = ""
	}
	ns, pod := ep.GetNamespace(), ep.GetPodName()
	switch {
	case pod != "":
		v.Pod = ns + "/" + pod
		name := pod
		if ws := ep.GetWorkloads(); len(ws) > 0 && ws[0].GetName() != "" {
			name = ws[0].GetName()
		}
		v.ID, v.Group, v.Label = ns+"/"+name, ns, name
	case ep.GetKind() == flowlensv1.EndpointKind_HOST || ep.GetKind() == flowlensv1.EndpointKind_NODE:
		name := cmpOr(ep.GetNodeName(), ep.GetName(), ip)
		v.ID, v.Group, v.Label = "host:"+name, "nodes", name
	case ep.GetName() != "":
		v.ID, v.Group, v.Label = "cidr:"+ep.GetName(), "outside", ep.GetName()
	case ep.GetKind() == flowlensv1.EndpointKind_WORLD:
		v.ID, v.Group, v.Label = "world", "outside", "world"
	default:
		// Unknown but not outside (a service IP without backend, an
		// address the cache has not learnt yet): by IP, so it is visible.
		v.ID, v.Group, v.Label = "ip:"+ip, "unknown", cmpOr(ip, "?")
	}
	return v
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func whyOf(p *flowlensv1.PolicyVerdict) *whyView {
	if p == nil {
		return nil
	}
	w := &whyView{Summary: p.GetSummary(), Source: p.GetSource(), Egress: sideOf(p.GetEgress()), Ingress: sideOf(p.GetIngress())}
	if p.GetVerdict() != flowlensv1.IntendedVerdict_INTENDED_VERDICT_UNSPECIFIED {
		w.Intended = p.GetVerdict().String()
	}
	return w
}

func sideOf(s *flowlensv1.PolicySide) *sideView {
	if s == nil {
		return nil
	}
	return &sideView{Applicable: s.GetApplicable(), Isolated: s.GetIsolated(), Allowed: s.GetAllowed(),
		IsolatedBy: refs(s.GetIsolatedBy()), AllowedBy: refs(s.GetAllowedBy())}
}

// refs writes policy references as policy.Verdict's summary does.
func refs(rs []*flowlensv1.PolicyRef) []string {
	var out []string
	for _, r := range rs {
		s := r.GetNamespace() + "/" + r.GetName()
		if r.GetRule() >= 0 {
			s += " rule " + strconv.Itoa(int(r.GetRule()))
		}
		out = append(out, s)
	}
	return out
}
