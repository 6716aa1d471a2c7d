package observer

import (
	"encoding/binary"
	"sync"
	"unique"
	"weak"

	"github.com/google/uuid"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

type (
	uniqueService = unique.Handle[serviceKey]
	uniquePolicy  = unique.Handle[policyKey]
)

// policyKey is a PolicyVerdict by value. The flows of one connection carry
// the same explanation interval after interval, so a full ring holds few
// distinct ones; unique keeps each once and forgets it when the last flow
// naming it is overwritten.
type policyKey struct {
	verdict, mismatch                         int32
	egress, ingress                           sideKey
	summary, source, enforcer, enforcerReason string
}

type sideKey struct {
	present, isolated, allowed, applicable bool
	// isolatedBy and allowedBy are packed with packRefs.
	isolatedBy, allowedBy string
}

func policyKeyOf(p *flowlensv1.PolicyVerdict) policyKey {
	return policyKey{
		verdict: int32(p.Verdict), mismatch: int32(p.Mismatch),
		egress: sideKeyOf(p.Egress), ingress: sideKeyOf(p.Ingress),
		summary: p.Summary, source: p.Source, enforcer: p.Enforcer, enforcerReason: p.EnforcerReason,
	}
}

func sideKeyOf(s *flowlensv1.PolicySide) sideKey {
	if s == nil {
		return sideKey{}
	}
	return sideKey{present: true, isolated: s.Isolated, allowed: s.Allowed, applicable: s.Applicable,
		isolatedBy: packRefs(s.IsolatedBy), allowedBy: packRefs(s.AllowedBy)}
}

// maxMemoPolicies bounds a policyMemo: past it the memo starts over.
// The judge shares a few thousand verdicts on a busy node (one per pod
// pair and port), and each entry is small.
const maxMemoPolicies = 16384

// policyMemo remembers the interned form of each PolicyVerdict by
// identity: the agent's judge shares one read-only verdict between the
// flows it judges alike, so the key (packRefs and all) is derived once per
// verdict rather than once per flow (issue 9). Weak keys keep no verdict
// alive once the judge dropped it (a recompiled policy set replaces them
// all); the dead keys go when the memo starts over. The zero value is ready.
type policyMemo struct {
	mu    sync.Mutex // guards byPtr
	byPtr map[weak.Pointer[flowlensv1.PolicyVerdict]]uniquePolicy
}

// handle interns p, which must not be modified afterwards: it is known by
// its address from then on. A nil memo interns p by value every time.
func (m *policyMemo) handle(p *flowlensv1.PolicyVerdict) uniquePolicy {
	if m == nil {
		return unique.Make(policyKeyOf(p))
	}
	w := weak.Make(p)
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.byPtr[w]; ok {
		return h
	}
	if m.byPtr == nil || len(m.byPtr) >= maxMemoPolicies {
		m.byPtr = make(map[weak.Pointer[flowlensv1.PolicyVerdict]]uniquePolicy)
	}
	h := unique.Make(policyKeyOf(p))
	m.byPtr[w] = h
	return h
}

func (k policyKey) proto() *flowlensv1.PolicyVerdict {
	return &flowlensv1.PolicyVerdict{
		Verdict: flowlensv1.IntendedVerdict(k.verdict), Mismatch: flowlensv1.Mismatch(k.mismatch),
		Egress: k.egress.proto(), Ingress: k.ingress.proto(),
		Summary: k.summary, Source: k.source, Enforcer: k.enforcer, EnforcerReason: k.enforcerReason,
	}
}

func (s sideKey) proto() *flowlensv1.PolicySide {
	if !s.present {
		return nil
	}
	return &flowlensv1.PolicySide{Isolated: s.isolated, Allowed: s.allowed, Applicable: s.applicable,
		IsolatedBy: unpackRefs(s.isolatedBy), AllowedBy: unpackRefs(s.allowedBy)}
}

// packRefs encodes refs as length-prefixed namespace and name and a varint
// rule each, so any strings survive.
func packRefs(refs []*flowlensv1.PolicyRef) string {
	if len(refs) == 0 {
		return ""
	}
	var b []byte
	for _, r := range refs {
		b = binary.AppendUvarint(b, uint64(len(r.GetNamespace())))
		b = append(b, r.GetNamespace()...)
		b = binary.AppendUvarint(b, uint64(len(r.GetName())))
		b = append(b, r.GetName()...)
		b = binary.AppendVarint(b, int64(r.GetRule()))
	}
	return string(b)
}

func unpackRefs(s string) []*flowlensv1.PolicyRef {
	if s == "" {
		return nil
	}
	b := []byte(s)
	var out []*flowlensv1.PolicyRef
	next := func() string {
		n, w := binary.Uvarint(b)
		v := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return v
	}
	for len(b) > 0 {
		r := &flowlensv1.PolicyRef{Namespace: next(), Name: next()}
		rule, w := binary.Varint(b)
		b = b[w:]
		r.Rule = int32(rule)
		out = append(out, r)
	}
	return out
}

// parseUUID packs a UUID in its canonical lowercase form; any other
// spelling (upper case, braces, urn:uuid:) would not come back the same.
// Parse takes 36 characters only as the dashed hex form, so that form in
// lower case is exactly what formatUUID gives back (checked without
// formatting: a string per flow, issue 9).
func parseUUID(s string) ([16]byte, bool) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return u, false
	}
	for i := range len(s) {
		if 'A' <= s[i] && s[i] <= 'F' {
			return u, false
		}
	}
	return u, true
}

func formatUUID(u [16]byte) string { return uuid.UUID(u).String() }
