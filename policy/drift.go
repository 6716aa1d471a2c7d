package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Diff describes how the set b (e.g. the cluster's) differs from a (e.g.
// the files'): one line per policy, sorted, "added ns/name" (in b only),
// "removed ns/name" (in a only) or "changed ns/name" (different spec).
// Metadata other than the name (labels, resourceVersion...) is ignored.
func Diff(a, b []networkingv1.NetworkPolicy) []string {
	return DiffDigests(Digests(a), Digests(b))
}

// SpecDigests is a policy set reduced to what Diff compares: per
// "namespace/name", a digest of the spec as the API server defaults it. A
// long-lived comparison (the agent's drift) keeps these, not the objects.
type SpecDigests map[string][sha256.Size]byte

// Digests digests each policy's spec; two specs have the same digest
// exactly when they are reflect.DeepEqual once defaulted.
func Digests(set []networkingv1.NetworkPolicy) SpecDigests {
	m := make(SpecDigests, len(set))
	h := sha256.New()
	for i := range set {
		h.Reset()
		digest(h, reflect.ValueOf(normalize(&set[i].Spec)).Elem())
		m[set[i].Namespace+"/"+set[i].Name] = [sha256.Size]byte(h.Sum(nil))
	}
	return m
}

// DiffDigests is Diff of two digested sets.
func DiffDigests(a, b SpecDigests) []string {
	var out []string
	for k, da := range a {
		db, ok := b[k]
		switch {
		case !ok:
			out = append(out, "removed "+k)
		case da != db:
			out = append(out, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	// Sorted by policy, then verb, so the status reads like a listing.
	slices.SortFunc(out, func(x, y string) int {
		_, kx, _ := strings.Cut(x, " ")
		_, ky, _ := strings.Cut(y, " ")
		if c := strings.Compare(kx, ky); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	return out
}

// digest writes v so that two values write the same bytes exactly when
// reflect.DeepEqual holds: nil and empty slices, maps and pointers differ,
// map entries go in key order, and every length is written so that no two
// values run together. It knows the kinds a NetworkPolicySpec is made of.
func digest(w io.Writer, v reflect.Value) {
	var n [binary.MaxVarintLen64 + 1]byte
	tag := func(t byte, x uint64) { n[0] = t; w.Write(binary.AppendUvarint(n[:1], x)) }
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			tag('n', 0)
			return
		}
		tag('p', 0)
		digest(w, v.Elem())
	case reflect.Slice:
		if v.IsNil() {
			tag('n', 0)
			return
		}
		tag('s', uint64(v.Len()))
		for i := range v.Len() {
			digest(w, v.Index(i))
		}
	case reflect.Map:
		if v.IsNil() {
			tag('n', 0)
			return
		}
		tag('m', uint64(v.Len()))
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			digest(w, k)
			digest(w, v.MapIndex(k))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			digest(w, v.Field(i))
		}
	case reflect.String:
		tag('"', uint64(v.Len()))
		io.WriteString(w, v.String())
	case reflect.Bool:
		if v.Bool() {
			tag('b', 1)
		} else {
			tag('b', 0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		tag('i', uint64(v.Int()))
	default:
		// A field of a kind Diff cannot compare must fail loudly in the
		// tests, not compare as equal.
		panic(fmt.Sprintf("policy: digest of a %s (%s)", v.Kind(), v.Type()))
	}
}

// normalize applies the API server's defaulting so that a file without
// policyTypes or protocols equals the object the cluster returns for it.
func normalize(s *networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicySpec {
	c := s.DeepCopy()
	if len(c.PolicyTypes) == 0 {
		c.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(c.Egress) > 0 {
			c.PolicyTypes = append(c.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	for i := range c.Ingress {
		defaultProtocols(c.Ingress[i].Ports)
		if len(c.Ingress[i].From) == 0 {
			c.Ingress[i].From = nil
		}
		if len(c.Ingress[i].Ports) == 0 {
			c.Ingress[i].Ports = nil
		}
	}
	for i := range c.Egress {
		defaultProtocols(c.Egress[i].Ports)
		if len(c.Egress[i].To) == 0 {
			c.Egress[i].To = nil
		}
		if len(c.Egress[i].Ports) == 0 {
			c.Egress[i].Ports = nil
		}
	}
	if len(c.Ingress) == 0 {
		c.Ingress = nil
	}
	if len(c.Egress) == 0 {
		c.Egress = nil
	}
	return c
}

func defaultProtocols(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Protocol == nil {
			tcp := corev1.ProtocolTCP
			ports[i].Protocol = &tcp
		}
	}
}
