package flowlog

import (
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// The nested messages of a Flow, for appendFlow.

func (e *enc) layer4(l4 *flowlensv1.Layer4) {
	if l4 == nil {
		return
	}
	e.object("l4")
	ports := func(name string, src, dst uint32) {
		e.object(name)
		e.uint32("source_port", src)
		e.uint32("destination_port", dst)
		e.close()
	}
	icmp := func(name string, typ, code uint32) {
		e.object(name)
		e.uint32("type", typ)
		e.uint32("code", code)
		e.close()
	}
	switch p := l4.Protocol.(type) {
	case *flowlensv1.Layer4_Tcp:
		ports("tcp", p.Tcp.GetSourcePort(), p.Tcp.GetDestinationPort())
	case *flowlensv1.Layer4_Udp:
		ports("udp", p.Udp.GetSourcePort(), p.Udp.GetDestinationPort())
	case *flowlensv1.Layer4_Icmpv4:
		icmp("icmpv4", p.Icmpv4.GetType(), p.Icmpv4.GetCode())
	case *flowlensv1.Layer4_Icmpv6:
		icmp("icmpv6", p.Icmpv6.GetType(), p.Icmpv6.GetCode())
	case *flowlensv1.Layer4_Sctp:
		ports("sctp", p.Sctp.GetSourcePort(), p.Sctp.GetDestinationPort())
	}
	e.close()
}

func (e *enc) endpoint(name string, ep *flowlensv1.Endpoint) {
	if ep == nil {
		return
	}
	e.object(name)
	e.enum("kind", int32(ep.Kind), flowlensv1.EndpointKind_name)
	e.str("namespace", ep.Namespace)
	e.str("pod_name", ep.PodName)
	e.strs("labels", ep.Labels)
	array(e, "workloads", ep.Workloads, func(w *flowlensv1.Workload) {
		e.open()
		e.str("kind", w.GetKind())
		e.str("name", w.GetName())
		e.close()
	})
	e.str("node_name", ep.NodeName)
	e.str("name", ep.Name)
	e.close()
}

func (e *enc) tcpFlags(f *flowlensv1.TCPFlags) {
	if f == nil {
		return
	}
	e.object("tcp_flags")
	e.bool("FIN", f.FIN)
	e.bool("SYN", f.SYN)
	e.bool("RST", f.RST)
	e.bool("PSH", f.PSH)
	e.bool("ACK", f.ACK)
	e.bool("URG", f.URG)
	e.bool("ECE", f.ECE)
	e.bool("CWR", f.CWR)
	e.close()
}

func (e *enc) policy(p *flowlensv1.PolicyVerdict) {
	if p == nil {
		return
	}
	e.object("policy")
	e.enum("verdict", int32(p.Verdict), flowlensv1.IntendedVerdict_name)
	e.side("egress", p.Egress)
	e.side("ingress", p.Ingress)
	e.enum("mismatch", int32(p.Mismatch), flowlensv1.Mismatch_name)
	e.str("summary", p.Summary)
	e.str("source", p.Source)
	e.str("enforcer", p.Enforcer)
	e.str("enforcer_reason", p.EnforcerReason)
	e.close()
}

func (e *enc) side(name string, s *flowlensv1.PolicySide) {
	if s == nil {
		return
	}
	e.object(name)
	e.bool("isolated", s.Isolated)
	e.refs("isolated_by", s.IsolatedBy)
	e.refs("allowed_by", s.AllowedBy)
	e.bool("allowed", s.Allowed)
	e.bool("applicable", s.Applicable)
	e.close()
}

func (e *enc) refs(name string, refs []*flowlensv1.PolicyRef) {
	array(e, name, refs, func(r *flowlensv1.PolicyRef) {
		e.open()
		e.str("namespace", r.GetNamespace())
		e.str("name", r.GetName())
		e.int32("rule", r.GetRule())
		e.close()
	})
}
