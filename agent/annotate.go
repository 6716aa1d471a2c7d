package agent

import (
	"net/netip"
	"time"

	"github.com/flowlens/flowlens/policy"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// namer says who an address is; the enrichment resolvers implement it.
type namer interface {
	Endpoint(ip netip.Addr, at time.Time) *flowlensv1.Endpoint
	Service(ip netip.Addr, port uint16, proto string) *flowlensv1.Service
}

// judge gives the intended NetworkPolicy verdict of a connection, with its
// mismatch against what the kernel did; nil when there is no intended set
// to judge by. The verdict may be shared by every flow judged alike (issue
// 9): callers must not modify it, as the enrichment's cached Endpoints.
type judge interface {
	Judge(q PolicyQuery, k kernelAction) *flowlensv1.PolicyVerdict
}

// PolicyQuery is a connection as NetworkPolicy sees it: from its initiator to
// the (post-DNAT) responder.
type PolicyQuery struct {
	Src, Dst         netip.Addr
	SrcKind, DstKind flowlensv1.EndpointKind
	Port             uint16
	Protocol         string // TCP, UDP, SCTP, ICMP
	ICMPType         uint8  // for ICMP: the type, as the enforcer profile matches it
}

// annotator adds names, the service and the policy verdict to a flow.
type annotator struct {
	names namer
	judge judge
}

func (a *annotator) annotate(fl *flowlensv1.Flow) {
	ip := fl.GetIp()
	src, err1 := netip.ParseAddr(ip.GetSource())
	dst, err2 := netip.ParseAddr(ip.GetDestination())
	if err1 != nil || err2 != nil {
		return
	}
	at := time.Now()
	if t := fl.GetTime(); t != nil {
		at = t.AsTime()
	}
	proto, sport, dport := l4Of(fl)
	if a.names != nil {
		fl.Source = a.names.Endpoint(src, at)
		fl.Destination = a.names.Endpoint(dst, at)
		a.service(fl, proto, dport)
	}
	if a.judge == nil || isICMPError(fl) {
		return
	}
	icmp := uint8(fl.GetL4().GetIcmpv4().GetType())
	q := PolicyQuery{Src: src, Dst: dst, SrcKind: fl.GetSource().GetKind(), DstKind: fl.GetDestination().GetKind(), Port: dport, Protocol: proto, ICMPType: icmp}
	if fl.GetIsReply() {
		// A reply is allowed exactly when the connection it answers is.
		q = PolicyQuery{Src: dst, Dst: src, SrcKind: q.DstKind, DstKind: q.SrcKind, Port: sport, Protocol: proto, ICMPType: icmp}
	}
	if pv := a.judge.Judge(q, kernelActionOf(fl)); pv != nil {
		fl.Policy = pv
	}
}

// service fills destination_service: the capture reports the pre-DNAT
// address in ip.destination_original (and its port in destination_service)
// when conntrack translated the flow; a flow still addressed to a ClusterIP
// (dropped before translation) names the service from the destination.
func (a *annotator) service(fl *flowlensv1.Flow, proto string, dport uint16) {
	if orig := fl.GetIp().GetDestinationOriginal(); orig != "" {
		addr, err := netip.ParseAddr(orig)
		if err != nil {
			return
		}
		port := uint16(fl.GetDestinationService().GetPort())
		if svc := a.names.Service(addr, port, proto); svc != nil {
			fl.DestinationService = svc
		}
		return
	}
	if fl.GetDestination().GetKind() == flowlensv1.EndpointKind_SERVICE {
		dst, _ := netip.ParseAddr(fl.GetIp().GetDestination())
		if svc := a.names.Service(dst, dport, proto); svc != nil {
			fl.DestinationService = svc
		}
	}
}

// kernelAction is what the kernel did with a flow, as far as its mismatch
// with the intent depends on it: a judge keys its shared verdicts by it.
type kernelAction struct {
	verdict flowlensv1.Verdict
	// otherDrop is a drop for another reason than netfilter (no socket, a
	// full queue): only netfilter drops are policy decisions, so such a
	// drop says nothing about policy and is never a mismatch.
	otherDrop bool
}

func kernelActionOf(fl *flowlensv1.Flow) kernelAction {
	v := fl.GetVerdict()
	return kernelAction{verdict: v, otherDrop: v == flowlensv1.Verdict_DROPPED && fl.GetDropReason() != "NETFILTER_DROP"}
}

// mismatch compares what the kernel did with the intent (policy.MismatchOf).
func (k kernelAction) mismatch(pv *flowlensv1.PolicyVerdict) flowlensv1.Mismatch {
	if k.otherDrop {
		return flowlensv1.Mismatch_NONE
	}
	return policy.MismatchOf(k.verdict, pv)
}

func l4Of(fl *flowlensv1.Flow) (proto string, sport, dport uint16) {
	switch p := fl.GetL4().GetProtocol().(type) {
	case *flowlensv1.Layer4_Tcp:
		return "TCP", uint16(p.Tcp.GetSourcePort()), uint16(p.Tcp.GetDestinationPort())
	case *flowlensv1.Layer4_Udp:
		return "UDP", uint16(p.Udp.GetSourcePort()), uint16(p.Udp.GetDestinationPort())
	case *flowlensv1.Layer4_Sctp:
		return "SCTP", uint16(p.Sctp.GetSourcePort()), uint16(p.Sctp.GetDestinationPort())
	case *flowlensv1.Layer4_Icmpv4, *flowlensv1.Layer4_Icmpv6:
		return "ICMP", 0, 0
	}
	return "", 0, 0
}

// isICMPError reports ICMP errors (unreachable, time exceeded, ...): they are
// RELATED to another connection, which policy already judged, and the
// unreachables a REJECT sends come from the node itself.
func isICMPError(fl *flowlensv1.Flow) bool {
	switch p := fl.GetL4().GetProtocol().(type) {
	case *flowlensv1.Layer4_Icmpv4:
		switch p.Icmpv4.GetType() {
		case 3, 4, 5, 11, 12:
			return true
		}
	case *flowlensv1.Layer4_Icmpv6:
		return p.Icmpv6.GetType() < 128
	}
	return false
}
