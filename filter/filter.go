package filter

import (
	"fmt"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// FieldError says which FlowFilter field held which unusable value, so callers
// (the server, the CLI) can name it in their own terms.
type FieldError struct {
	Field  string // proto field name, e.g. "source_ip"
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// predicate reports whether one field of a filter matches a flow. Predicates
// are built once by Compile and must not allocate.
type predicate func(*flowlensv1.Flow) bool

// conjunction is one compiled FlowFilter: every predicate must hold.
type conjunction []predicate

func (c conjunction) match(fl *flowlensv1.Flow) bool {
	for _, p := range c {
		if !p(fl) {
			return false
		}
	}
	return true
}

// Filter is a compiled allow list and deny list. It is immutable and safe for
// concurrent use.
type Filter struct {
	allow []conjunction
	deny  []conjunction
}

// Compile validates and compiles the allow and deny lists. Errors name the list,
// the filter index, the field and the value, e.g.
// `allowlist[0]: source_ip "10.0.0.0/33": invalid CIDR`.
func Compile(allow, deny []*flowlensv1.FlowFilter) (*Filter, error) {
	f := &Filter{}
	for i, ff := range allow {
		c, err := compileOne(ff)
		if err != nil {
			return nil, fmt.Errorf("allowlist[%d]: %w", i, err)
		}
		f.allow = append(f.allow, c)
	}
	for i, ff := range deny {
		c, err := compileOne(ff)
		if err != nil {
			return nil, fmt.Errorf("denylist[%d]: %w", i, err)
		}
		f.deny = append(f.deny, c)
	}
	return f, nil
}

// Match reports whether fl passes: it matches any allow filter (or there are
// none) and no deny filter. A nil Filter passes everything.
func (f *Filter) Match(fl *flowlensv1.Flow) bool {
	if f == nil {
		return true
	}
	if len(f.allow) > 0 {
		ok := false
		for _, c := range f.allow {
			if c.match(fl) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, c := range f.deny {
		if c.match(fl) {
			return false
		}
	}
	return true
}

// Validate compiles one filter and discards the result; the CLI uses it to
// reject a flag value before connecting.
func Validate(ff *flowlensv1.FlowFilter) error {
	_, err := compileOne(ff)
	return err
}

func compileOne(ff *flowlensv1.FlowFilter) (conjunction, error) {
	var c conjunction
	add := func(p predicate, err error) error {
		if err != nil {
			return err
		}
		if p != nil {
			c = append(c, p)
		}
		return nil
	}
	src := (*flowlensv1.Flow).GetSource
	dst := (*flowlensv1.Flow).GetDestination
	srcIP := func(fl *flowlensv1.Flow) string { return fl.GetIp().GetSource() }
	dstIP := func(fl *flowlensv1.Flow) string { return fl.GetIp().GetDestination() }
	steps := []func() error{
		func() error { return add(podPredicate("source_pod", ff.GetSourcePod(), src)) },
		func() error { return add(podPredicate("destination_pod", ff.GetDestinationPod(), dst)) },
		func() error { return add(eitherPod(ff.GetPod())) },
		func() error { return add(namespacePredicate("source_namespace", ff.GetSourceNamespace(), src)) },
		func() error {
			return add(namespacePredicate("destination_namespace", ff.GetDestinationNamespace(), dst))
		},
		func() error { return add(eitherNamespace(ff.GetNamespace())) },
		func() error { return add(ipPredicate("source_ip", ff.GetSourceIp(), srcIP)) },
		func() error { return add(ipPredicate("destination_ip", ff.GetDestinationIp(), dstIP)) },
		func() error { return add(eitherIP(ff.GetIp())) },
		func() error { return add(labelPredicate("source_label", ff.GetSourceLabel(), src)) },
		func() error { return add(labelPredicate("destination_label", ff.GetDestinationLabel(), dst)) },
		func() error { return add(eitherLabel(ff.GetLabel())) },
		func() error { return add(portPredicate("source_port", ff.GetSourcePort(), sourcePort)) },
		func() error { return add(portPredicate("destination_port", ff.GetDestinationPort(), destinationPort)) },
		func() error { return add(eitherPort(ff.GetPort())) },
		func() error { return add(protocolPredicate(ff.GetProtocol())) },
		func() error { return add(verdictPredicate(ff.GetVerdict())) },
		func() error { return add(dropReasonPredicate(ff.GetDropReason())) },
		func() error { return add(directionPredicate(ff.GetTrafficDirection())) },
		func() error { return add(nodePredicate(ff.GetNodeName())) },
		func() error { return add(mismatchPredicate(ff.GetMismatch())) },
		func() error { return add(attemptsPredicate(ff.GetAggregatedAttempts()), nil) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// either ORs two predicates; a nil pair means the field was not set.
func either(a, b predicate, err error) (predicate, error) {
	if err != nil || a == nil {
		return nil, err
	}
	return func(fl *flowlensv1.Flow) bool { return a(fl) || b(fl) }, nil
}
