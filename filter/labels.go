package filter

import (
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// requirement is a labels.Requirement evaluated directly against an
// Endpoint's "key=value" strings: going through labels.Labels would box the
// slice into an interface and allocate on every flow.
type requirement struct {
	key    string
	op     selection.Operator
	values []string
	num    int64 // for Gt/Lt
}

// selector is one label selector: all requirements must hold.
type selector []requirement

func parseSelector(field, v string) (selector, error) {
	if strings.TrimSpace(v) == "" {
		return nil, &FieldError{field, v, "empty label selector"}
	}
	sel, err := labels.Parse(v)
	if err != nil {
		return nil, &FieldError{field, v, "invalid label selector: " + err.Error()}
	}
	reqs, _ := sel.Requirements()
	out := make(selector, 0, len(reqs))
	for _, r := range reqs {
		q := requirement{key: r.Key(), op: r.Operator(), values: r.ValuesUnsorted()}
		if q.op == selection.GreaterThan || q.op == selection.LessThan {
			n, err := strconv.ParseInt(q.values[0], 10, 64)
			if err != nil {
				return nil, &FieldError{field, v, "invalid label selector: " + err.Error()}
			}
			q.num = n
		}
		out = append(out, q)
	}
	return out, nil
}

// lookup finds key in sorted-or-not "k=v" strings.
func lookup(lbls []string, key string) (string, bool) {
	for _, l := range lbls {
		if len(l) > len(key) && l[len(key)] == '=' && l[:len(key)] == key {
			return l[len(key)+1:], true
		}
		if l == key { // a label without "=" has an empty value
			return "", true
		}
	}
	return "", false
}

func (s selector) matches(lbls []string) bool {
	for _, r := range s {
		val, has := lookup(lbls, r.key)
		var ok bool
		switch r.op {
		case selection.In, selection.Equals, selection.DoubleEquals:
			ok = has && slices.Contains(r.values, val)
		case selection.NotIn, selection.NotEquals:
			ok = !has || !slices.Contains(r.values, val)
		case selection.Exists:
			ok = has
		case selection.DoesNotExist:
			ok = !has
		case selection.GreaterThan, selection.LessThan:
			if !has {
				break
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				break
			}
			ok = (r.op == selection.GreaterThan && n > r.num) || (r.op == selection.LessThan && n < r.num)
		}
		if !ok {
			return false
		}
	}
	return true
}

func labelPredicate(field string, values []string, ep endpointOf) (predicate, error) {
	if len(values) == 0 {
		return nil, nil
	}
	sels := make([]selector, 0, len(values))
	for _, v := range values {
		s, err := parseSelector(field, v)
		if err != nil {
			return nil, err
		}
		sels = append(sels, s)
	}
	return func(fl *flowlensv1.Flow) bool {
		lbls := ep(fl).GetLabels()
		for _, s := range sels {
			if s.matches(lbls) {
				return true
			}
		}
		return false
	}, nil
}

func eitherLabel(values []string) (predicate, error) {
	a, err := labelPredicate("label", values, (*flowlensv1.Flow).GetSource)
	if err != nil || a == nil {
		return nil, err
	}
	b, _ := labelPredicate("label", values, (*flowlensv1.Flow).GetDestination)
	return either(a, b, nil)
}
