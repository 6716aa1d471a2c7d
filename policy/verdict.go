package policy

import (
	corev1 "k8s.io/api/core/v1"
	"strconv"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Intended is the verdict as the API names it: ALLOW, DENY or NOT_ISOLATED.
func (v Verdict) Intended() flowlensv1.IntendedVerdict {
	switch {
	case !v.Isolated:
		return flowlensv1.IntendedVerdict_NOT_ISOLATED
	case v.Allowed:
		return flowlensv1.IntendedVerdict_ALLOW
	default:
		return flowlensv1.IntendedVerdict_DENY
	}
}

// Summary is a one-line explanation, for example
// "deny: database/postgresql-cluster-1 ingress isolated by
// database/default-deny-ingress, no rule allows linkding/linkding-0 on 5432/TCP".
func (v Verdict) Summary() string { return string(v.AppendSummary(nil)) }

// AppendSummary appends Summary to b (for writers that avoid allocating).
func (v Verdict) AppendSummary(b []byte) []byte {
	src, dst := v.SrcPod, v.DstPod
	if src == "" {
		src = v.Query.Src.String()
	}
	if dst == "" {
		dst = v.Query.Dst.String()
	}
	if v.OwnNode != "" {
		return append(append(append(append(b, "allow: traffic from node "...), v.OwnNode...), " to its own pod "...), dst...)
	}
	if !v.Isolated {
		return append(append(append(append(b, "allow: no policy isolates "...), src...), " or "...), dst...)
	}
	if v.Allowed {
		b = append(b, "allow: "...)
		first := true
		for _, s := range []struct {
			side *Side
			who  string
			dir  string
		}{{&v.Egress, src, " egress"}, {&v.Ingress, dst, " ingress"}} {
			if !s.side.Applicable {
				continue
			}
			if !first {
				b = append(b, "; "...)
			}
			first = false
			b = append(append(b, s.who...), s.dir...)
			if !s.side.Isolated {
				b = append(b, " not isolated"...)
				continue
			}
			b = append(b, " allowed by "...)
			b = appendRefs(b, s.side.AllowedBy)
		}
		return b
	}
	b = append(b, "deny: "...)
	if !v.Egress.Allowed {
		b = appendDenied(b, src, " egress", &v.Egress, dst, v.Query)
	}
	if !v.Ingress.Allowed {
		if !v.Egress.Allowed {
			b = append(b, "; "...)
		}
		b = appendDenied(b, dst, " ingress", &v.Ingress, src, v.Query)
	}
	if v.EnforcerAllows != "" {
		b = append(append(append(append(b, "; accepted anyway by enforcer "...), v.Enforcer...), ": "...), v.EnforcerAllows...)
	}
	return b
}

func appendDenied(b []byte, who, dir string, s *Side, other string, q Query) []byte {
	b = append(append(b, who...), dir...)
	b = append(b, " isolated by "...)
	b = appendRefs(b, s.IsolatedBy)
	b = append(b, ", no rule allows "...)
	b = append(b, other...)
	b = append(b, " on "...)
	return AppendPort(b, q.Port, q.Protocol)
}

func appendRefs(b []byte, refs []Ref) []byte {
	for i, r := range refs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(append(append(b, r.Namespace...), '/'), r.Name...)
		if r.Rule >= 0 {
			b = append(b, " rule "...)
			b = strconv.AppendInt(b, int64(r.Rule), 10)
		}
	}
	return b
}

// AppendPort appends "5432/TCP", or "ICMP" for ICMP.
func AppendPort(b []byte, port uint16, proto corev1.Protocol) []byte {
	if proto == ProtocolICMP {
		return append(b, "ICMP"...)
	}
	b = strconv.AppendUint(b, uint64(port), 10)
	return append(append(b, '/'), proto...)
}

// Proto fills the API's PolicyVerdict: verdict, both sides and summary. The
// mismatch (which needs the kernel's verdict, see MismatchOf) and the source
// are left to the caller.
//
// The message and its sides are one allocation, the refs three, and the
// summary is built on the stack.
func (v Verdict) Proto() *flowlensv1.PolicyVerdict {
	refs := newRefsProto(len(v.Egress.IsolatedBy) + len(v.Egress.AllowedBy) + len(v.Ingress.IsolatedBy) + len(v.Ingress.AllowedBy))
	return v.proto(&refs)
}

// RefsConverter turns a list of refs into the API's (nil when empty).
type RefsConverter interface {
	Refs([]Ref) []*flowlensv1.PolicyRef
}

// ProtoSharing is Proto with the lists of refs from refs, which may hand
// the same list to several verdicts: the agent's judge shares them, as a
// pod's isolating policies and a rule's refs are shared by many verdicts.
func (v Verdict) ProtoSharing(refs RefsConverter) *flowlensv1.PolicyVerdict {
	return v.proto(refs)
}

func (v Verdict) proto(refs RefsConverter) *flowlensv1.PolicyVerdict {
	m := new(struct {
		pv    flowlensv1.PolicyVerdict
		sides [2]flowlensv1.PolicySide
	})
	var summary [256]byte
	m.pv.Verdict = v.Intended()
	m.pv.Summary = string(v.AppendSummary(summary[:0]))
	m.pv.Enforcer = v.Enforcer
	m.pv.EnforcerReason = v.EnforcerAllows
	m.pv.Egress = v.Egress.proto(&m.sides[0], refs)
	m.pv.Ingress = v.Ingress.proto(&m.sides[1], refs)
	return &m.pv
}

func (s *Side) proto(out *flowlensv1.PolicySide, refs RefsConverter) *flowlensv1.PolicySide {
	out.Applicable = s.Applicable
	out.Isolated = s.Isolated
	out.Allowed = s.Allowed
	out.IsolatedBy = refs.Refs(s.IsolatedBy)
	out.AllowedBy = refs.Refs(s.AllowedBy)
	return out
}

// refsProto hands out the PolicyRefs of one verdict from one array.
type refsProto struct {
	refs []flowlensv1.PolicyRef
	ptrs []*flowlensv1.PolicyRef
}

func newRefsProto(n int) refsProto {
	if n == 0 {
		return refsProto{}
	}
	return refsProto{refs: make([]flowlensv1.PolicyRef, n), ptrs: make([]*flowlensv1.PolicyRef, n)}
}

// Refs converts refs (nil when there are none, as before) into the
// verdict's array.
func (p *refsProto) Refs(refs []Ref) []*flowlensv1.PolicyRef {
	if len(refs) == 0 {
		return nil
	}
	out := p.ptrs[:len(refs):len(refs)]
	p.ptrs = p.ptrs[len(refs):]
	for i, r := range refs {
		out[i] = RefProto(&p.refs[i], r)
	}
	p.refs = p.refs[len(refs):]
	return out
}

// RefProto fills out from r and returns it.
func RefProto(out *flowlensv1.PolicyRef, r Ref) *flowlensv1.PolicyRef {
	out.Namespace, out.Name = r.Namespace, r.Name
	if r.Rule >= 0 {
		out.Rule = int32(r.Rule)
	}
	return out
}

// MismatchOf compares the kernel's verdict with the intended one: an
// intended allow (ALLOW, or NOT_ISOLATED: nothing isolates, so everything is
// allowed) that the kernel DROPPED is UNEXPECTED_DROP, an intended DENY that
// it FORWARDED is UNEXPECTED_ALLOW, unless the enforcer profile explains it
// (enforcer_reason): that is ENFORCER_ALLOW, nothing a policy can change.
// Without an intended verdict or a kernel
// verdict the answer is MISMATCH_UNSPECIFIED.
func MismatchOf(kernel flowlensv1.Verdict, intended *flowlensv1.PolicyVerdict) flowlensv1.Mismatch {
	if intended == nil || intended.Verdict == flowlensv1.IntendedVerdict_INTENDED_VERDICT_UNSPECIFIED ||
		kernel == flowlensv1.Verdict_VERDICT_UNSPECIFIED {
		return flowlensv1.Mismatch_MISMATCH_UNSPECIFIED
	}
	allow := intended.Verdict != flowlensv1.IntendedVerdict_DENY
	switch {
	case allow && kernel == flowlensv1.Verdict_DROPPED:
		return flowlensv1.Mismatch_UNEXPECTED_DROP
	case !allow && kernel == flowlensv1.Verdict_FORWARDED && intended.EnforcerReason != "":
		return flowlensv1.Mismatch_ENFORCER_ALLOW
	case !allow && kernel == flowlensv1.Verdict_FORWARDED:
		return flowlensv1.Mismatch_UNEXPECTED_ALLOW
	default:
		return flowlensv1.Mismatch_NONE
	}
}
