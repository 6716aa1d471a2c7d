package observe

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/flowlens/flowlens/filter"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// filterFlags turns filter flags into an allow list and a deny list, in
// command-line order: pflag calls Set in the order flags appear, which is what
// lets --not apply to the next filter flag only (hubble does the same with
// its own flag values).
//
// All positive flags go into one allow filter (different flags AND, repeated
// flags OR). Each negated flag becomes a deny filter of its own, so
// `--not --namespace a --not --namespace b` hides both namespaces.
type filterFlags struct {
	allow      *flowlensv1.FlowFilter
	deny       []*flowlensv1.FlowFilter
	negateNext bool
	// doubleNot records "--not --not", reported by lists: an error from
	// Set would read `invalid argument "true" for "--not" flag`, which
	// names neither what is wrong nor the fix.
	doubleNot bool
	// nodes are the positive --node values: with --port-forward they also
	// choose which agents to connect to.
	nodes []string
}

func newFilterFlags() *filterFlags { return &filterFlags{allow: &flowlensv1.FlowFilter{}} }

// lists returns the allow and deny lists for a GetFlowsRequest.
func (f *filterFlags) lists() (allow, deny []*flowlensv1.FlowFilter, err error) {
	if f.doubleNot {
		return nil, nil, errors.New("--not given twice in a row: --not negates the one filter flag after it, and two do not cancel out; give it once")
	}
	if f.negateNext {
		return nil, nil, errors.New("--not must be followed by a filter flag")
	}
	if !proto.Equal(f.allow, &flowlensv1.FlowFilter{}) {
		allow = []*flowlensv1.FlowFilter{f.allow}
	}
	return allow, f.deny, nil
}

// setter parses one flag value into a FlowFilter holding only that value.
type setter func(v string) (*flowlensv1.FlowFilter, error)

// filterValue is the pflag.Value of one filter flag.
type filterValue struct {
	owner  *filterFlags
	set    setter
	values []string
	node   bool // the --node flag
}

func (v *filterValue) String() string { return strings.Join(v.values, ",") }
func (v *filterValue) Type() string   { return "filter" }

func (v *filterValue) Set(s string) error {
	if !utf8.ValidString(s) {
		// A proto string must be UTF-8: the request would fail to marshal
		// with an error naming no flag (found by FuzzFilterFlags).
		return errors.New("not valid UTF-8")
	}
	one, err := v.set(s)
	if err != nil {
		return err
	}
	if err := filter.Validate(one); err != nil {
		var fe *filter.FieldError
		if errors.As(err, &fe) {
			return errors.New(fe.Reason) // pflag already names the flag and value
		}
		return err
	}
	v.values = append(v.values, s)
	if v.owner.negateNext {
		v.owner.deny = append(v.owner.deny, one)
		v.owner.negateNext = false
		return nil
	}
	if v.node {
		v.owner.nodes = append(v.owner.nodes, s)
	}
	proto.Merge(v.owner.allow, one) // repeated fields append: values OR
	return nil
}

// boolFilterValue is a filter flag given without a value, like --attempts:
// pflag shows a bool flag as a switch.
type boolFilterValue struct{ *filterValue }

func (*boolFilterValue) Type() string { return "bool" }

func attemptsSetter(v string) (*ff, error) {
	on, err := strconv.ParseBool(v)
	switch {
	case err != nil:
		return nil, errors.New("want true, or no value")
	case !on:
		// False would constrain nothing: proto3 cannot send "not an
		// aggregate" as a value, only as a denylist entry.
		return nil, errors.New("false selects nothing; to leave aggregates out use --not --attempts")
	}
	return &ff{AggregatedAttempts: true}, nil
}

// notValue is --not: a boolean flag that marks the next filter flag negated.
type notValue struct{ owner *filterFlags }

func (n *notValue) String() string   { return "false" }
func (n *notValue) Type() string     { return "bool" }
func (n *notValue) IsBoolFlag() bool { return true }
func (n *notValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	if b && n.owner.negateNext {
		n.owner.doubleNot = true
	}
	n.owner.negateNext = b
	return nil
}

type ff = flowlensv1.FlowFilter

func str(fn func(*ff, string)) setter {
	return func(v string) (*ff, error) { f := &ff{}; fn(f, v); return f, nil }
}

func port(fn func(*ff, uint32)) setter {
	return func(v string) (*ff, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, errors.New("invalid port (want a number 1-65535)")
		}
		f := &ff{}
		fn(f, uint32(n))
		return f, nil
	}
}

func enumSetter(kind string, names map[string]int32, fn func(*ff, int32)) setter {
	return func(v string) (*ff, error) {
		n, ok := names[strings.ToUpper(v)]
		if !ok || n == 0 {
			var want []string
			for name, i := range names {
				if i != 0 {
					want = append(want, name)
				}
			}
			return nil, fmt.Errorf("unknown %s (want one of %s)", kind, strings.Join(sorted(want), ", "))
		}
		f := &ff{}
		fn(f, n)
		return f, nil
	}
}

// mismatchValues are what --mismatch accepts, case-insensitively: the API's
// names, ANY for either unexpected verdict (not ENFORCER_ALLOW, which the
// enforcer profile explains), and the short forms the flag
// took before it required a value. The flag's help is built from this list.
var mismatchValues = []struct {
	name, alias string
	means       []flowlensv1.Mismatch
}{
	{"UNEXPECTED_DROP", "drop", []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP}},
	{"UNEXPECTED_ALLOW", "allow", []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_ALLOW}},
	{"ENFORCER_ALLOW", "enforcer", []flowlensv1.Mismatch{flowlensv1.Mismatch_ENFORCER_ALLOW}},
	{"ANY", "", []flowlensv1.Mismatch{flowlensv1.Mismatch_UNEXPECTED_DROP, flowlensv1.Mismatch_UNEXPECTED_ALLOW}},
	{"NONE", "", []flowlensv1.Mismatch{flowlensv1.Mismatch_NONE}},
}

// mismatchUsage lists every accepted value, e.g. "UNEXPECTED_DROP (or drop)".
func mismatchUsage() string {
	var parts []string
	for _, m := range mismatchValues {
		p := m.name
		if m.alias != "" {
			p += " (or " + m.alias + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func mismatchSetter(v string) (*ff, error) {
	for _, m := range mismatchValues {
		if strings.EqualFold(v, m.name) || (m.alias != "" && strings.EqualFold(v, m.alias)) {
			return &ff{Mismatch: slices.Clone(m.means)}, nil
		}
	}
	return nil, errors.New("unknown mismatch (want " + mismatchUsage() + ")")
}

// dropReasonSetter refuses names that are no kernel's drop reason: the
// filter itself accepts any well-formed name (the agent's kernel may know
// newer ones), so without this a typo would match nothing, silently.
func dropReasonSetter(v string) (*ff, error) {
	f := &ff{DropReason: []string{filter.NormalizeDropReason(v)}}
	if filter.Validate(f) != nil || filter.KnownDropReason(v) {
		return f, nil // Set reports a malformed name in the filter's words
	}
	msg := "unknown drop reason (want a name of the kernel's enum skb_drop_reason as of Linux 6.18, such as NETFILTER_DROP or NO_SOCKET, or a reason's number"
	if similar := filter.SimilarDropReasons(v); len(similar) > 0 {
		msg += "; did you mean " + strings.Join(similar, ", ")
	}
	return nil, errors.New(msg + ")")
}

// addFlags registers every filter flag on fs.
func (f *filterFlags) addFlags(fs *pflag.FlagSet) {
	add := func(name, short, usage string, s setter) *pflag.Flag {
		v := &filterValue{owner: f, set: s}
		fl := fs.VarPF(v, name, short, usage)
		if name == "node" {
			v.node = true
		}
		return fl
	}
	add("pod", "", `pod at either end, "[namespace/]name" prefix`, str(func(f *ff, v string) { f.Pod = append(f.Pod, v) }))
	add("from-pod", "", `source pod, "[namespace/]name" prefix`, str(func(f *ff, v string) { f.SourcePod = append(f.SourcePod, v) }))
	add("to-pod", "", `destination pod, "[namespace/]name" prefix`, str(func(f *ff, v string) { f.DestinationPod = append(f.DestinationPod, v) }))
	add("namespace", "n", "namespace at either end", str(func(f *ff, v string) { f.Namespace = append(f.Namespace, v) }))
	add("from-namespace", "", "source namespace", str(func(f *ff, v string) { f.SourceNamespace = append(f.SourceNamespace, v) }))
	add("to-namespace", "", "destination namespace", str(func(f *ff, v string) { f.DestinationNamespace = append(f.DestinationNamespace, v) }))
	add("ip", "", "IP or CIDR at either end", str(func(f *ff, v string) { f.Ip = append(f.Ip, v) }))
	add("from-ip", "", "source IP or CIDR", str(func(f *ff, v string) { f.SourceIp = append(f.SourceIp, v) }))
	add("to-ip", "", "destination IP or CIDR", str(func(f *ff, v string) { f.DestinationIp = append(f.DestinationIp, v) }))
	add("label", "l", `label selector at either end ("app=web,tier in (a,b)")`, str(func(f *ff, v string) { f.Label = append(f.Label, v) }))
	add("from-label", "", "source label selector", str(func(f *ff, v string) { f.SourceLabel = append(f.SourceLabel, v) }))
	add("to-label", "", "destination label selector", str(func(f *ff, v string) { f.DestinationLabel = append(f.DestinationLabel, v) }))
	add("port", "", "port at either end", port(func(f *ff, v uint32) { f.Port = append(f.Port, v) }))
	add("from-port", "", "source port", port(func(f *ff, v uint32) { f.SourcePort = append(f.SourcePort, v) }))
	add("to-port", "", "destination port", port(func(f *ff, v uint32) { f.DestinationPort = append(f.DestinationPort, v) }))
	add("protocol", "", "protocol: "+strings.Join(filter.Protocols, ", "), func(v string) (*ff, error) {
		p, ok := filter.ParseProtocol(v)
		if !ok {
			return nil, errors.New("unknown protocol (want one of " + strings.Join(filter.Protocols, ", ") + ")")
		}
		return &ff{Protocol: []string{p}}, nil
	})
	add("verdict", "", "verdict: FORWARDED or DROPPED", enumSetter("verdict", flowlensv1.Verdict_value,
		func(f *ff, v int32) { f.Verdict = append(f.Verdict, flowlensv1.Verdict(v)) }))
	add("drop-reason", "", "kernel drop reason (enum skb_drop_reason, with or without SKB_DROP_REASON_), e.g. NETFILTER_DROP", dropReasonSetter)
	add("traffic-direction", "", "traffic direction: ingress or egress", enumSetter("direction", flowlensv1.TrafficDirection_value,
		func(f *ff, v int32) { f.TrafficDirection = append(f.TrafficDirection, flowlensv1.TrafficDirection(v)) }))
	add("node", "", "node name or glob (with --port-forward, also which agents to connect to)",
		str(func(f *ff, v string) { f.NodeName = append(f.NodeName, v) }))
	add("mismatch", "", "kernel and intended verdict disagree: "+mismatchUsage()+"; ANY is either unexpected verdict", mismatchSetter)
	attempts := fs.VarPF(&boolFilterValue{&filterValue{owner: f, set: attemptsSetter}}, "attempts", "",
		"only aggregates of dropped connection attempts (ns/pod:*, N attempts); --not --attempts hides them")
	attempts.NoOptDefVal = "true"
	not := fs.VarPF(&notValue{owner: f}, "not", "", "negate the next filter flag")
	not.NoOptDefVal = "true"
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
