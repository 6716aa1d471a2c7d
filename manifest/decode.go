package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kind decodes one object and adds it to Objects.
type kind struct {
	decode     func(raw []byte) (any, error)
	add        func(o *Objects, v any) Key
	namespaced bool
}

func kindOf[T any](namespaced bool, add func(o *Objects, v *T) Key) kind {
	return kind{
		namespaced: namespaced,
		decode: func(raw []byte) (any, error) {
			v := new(T)
			return v, strictJSON(raw, v)
		},
		add: func(o *Objects, v any) Key { return add(o, v.(*T)) },
	}
}

// kinds maps apiVersion/kind to its decoder.
var kinds = map[string]kind{
	"v1/Namespace": kindOf(false, func(o *Objects, v *corev1.Namespace) Key {
		o.Namespaces = append(o.Namespaces, *v)
		return Key{Kind: "Namespace", Name: v.Name}
	}),
	"v1/Pod": kindOf(true, func(o *Objects, v *corev1.Pod) Key {
		o.Pods = append(o.Pods, *v)
		return Key{Kind: "Pod", Namespace: v.Namespace, Name: v.Name}
	}),
	"v1/Service": kindOf(true, func(o *Objects, v *corev1.Service) Key {
		o.Services = append(o.Services, *v)
		return Key{Kind: "Service", Namespace: v.Namespace, Name: v.Name}
	}),
	"v1/Node": kindOf(false, func(o *Objects, v *corev1.Node) Key {
		o.Nodes = append(o.Nodes, *v)
		return Key{Kind: "Node", Name: v.Name}
	}),
	"discovery.k8s.io/v1/EndpointSlice": kindOf(true, func(o *Objects, v *discoveryv1.EndpointSlice) Key {
		o.EndpointSlices = append(o.EndpointSlices, *v)
		return Key{Kind: "EndpointSlice", Namespace: v.Namespace, Name: v.Name}
	}),
	"networking.k8s.io/v1/NetworkPolicy": kindOf(true, func(o *Objects, v *networkingv1.NetworkPolicy) Key {
		o.NetworkPolicies = append(o.NetworkPolicies, *v)
		return Key{Kind: "NetworkPolicy", Namespace: v.Namespace, Name: v.Name}
	}),
}

// listKinds maps a typed List to the apiVersion/kind of its items, which
// may omit their own apiVersion and kind. "v1/List" items must carry theirs.
var listKinds = map[string]string{
	"v1/List":                                "",
	"v1/NamespaceList":                       "v1/Namespace",
	"v1/PodList":                             "v1/Pod",
	"v1/ServiceList":                         "v1/Service",
	"v1/NodeList":                            "v1/Node",
	"discovery.k8s.io/v1/EndpointSliceList":  "discovery.k8s.io/v1/EndpointSlice",
	"networking.k8s.io/v1/NetworkPolicyList": "networking.k8s.io/v1/NetworkPolicy",
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type list struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   json.RawMessage   `json:"metadata,omitempty"`
	Items      []json.RawMessage `json:"items"`
}

// unit is one object to decode: a document or a List item.
type unit struct {
	raw  []byte
	gvk  string
	org  Origin
	item int // List item index, -1 for a document
	val  any
	err  error
}

// Decode reads one stream of YAML or JSON documents. name is used in errors
// and origins (usually the file path).
//
// Documents, and then objects, are decoded in parallel: a cluster dump of
// thousands of pods is mostly YAML-to-JSON conversion and reflection.
func Decode(name string, r io.Reader) (*Objects, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	docs, err := SplitDocuments(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Origin{File: name, Doc: len(docs), Item: -1}, err)
	}
	raws := make([][]byte, len(docs))
	errs := make([]error, len(docs))
	parallel(len(docs), func(i int) { raws[i], errs[i] = toJSON(docs[i]) })

	var units []unit
	for i, raw := range raws {
		org := Origin{File: name, Doc: i, Item: -1}
		if errs[i] != nil {
			return nil, fmt.Errorf("%s: %w", org, errs[i])
		}
		if raw == nil {
			continue
		}
		if units, err = appendUnits(units, raw, org); err != nil {
			return nil, fmt.Errorf("%s: %w", org, err)
		}
	}
	parallel(len(units), func(i int) {
		u := &units[i]
		u.val, u.err = kinds[u.gvk].decode(u.raw)
	})

	o := &Objects{Origins: map[Key]Origin{}}
	for _, u := range units {
		short := u.gvk[strings.LastIndexByte(u.gvk, '/')+1:]
		prefix := u.org.String()
		if u.item >= 0 {
			prefix = fmt.Sprintf("%s: item %d", Origin{File: u.org.File, Doc: u.org.Doc, Item: -1}, u.item)
		}
		if u.err != nil {
			return nil, fmt.Errorf("%s: %s: %w", prefix, short, u.err)
		}
		kd := kinds[u.gvk]
		k := kd.add(o, u.val)
		if k.Name == "" {
			return nil, fmt.Errorf("%s: %s: metadata.name is empty", prefix, short)
		}
		// A cluster dump always carries namespaces; without one the object
		// could not be named or selected, and every later error about it
		// would have no file to point at.
		if k.Namespace == "" && kd.namespaced {
			return nil, fmt.Errorf("%s: %s %s: metadata.namespace is empty", prefix, short, k.Name)
		}
		if prev, ok := o.Origins[k]; ok {
			return nil, fmt.Errorf("%s: %s already defined at %s", prefix, k, prev)
		}
		o.Origins[k] = u.org
	}
	return o, nil
}

// toJSON converts one document; nil means an empty document.
func toJSON(doc []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(doc)
	// JSON input (kubectl get -o json) skips the YAML parser, which is most
	// of the cost of large files. Flow-style YAML ("{a: 1}") is not valid
	// JSON and takes the YAML path.
	raw := trimmed
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		// YAMLToJSONStrict rejects duplicate keys, which plain YAML would
		// silently resolve to the last one.
		var err error
		if raw, err = yaml.YAMLToJSONStrict(doc); err != nil {
			return nil, fmt.Errorf("malformed YAML: %w", err)
		}
		raw = bytes.TrimSpace(raw)
	}
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil // only comments or blank
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("document is not an object (starts with %q)", firstRune(raw))
	}
	return raw, nil
}

func appendUnits(units []unit, raw []byte, org Origin) ([]unit, error) {
	var tm typeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("read apiVersion/kind: %w", err)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return nil, fmt.Errorf("missing apiVersion or kind (apiVersion %q, kind %q)", tm.APIVersion, tm.Kind)
	}
	gvk := tm.APIVersion + "/" + tm.Kind
	itemKind, isList := listKinds[gvk]
	if !isList {
		if _, ok := kinds[gvk]; !ok {
			return nil, unknownKind(tm)
		}
		return append(units, unit{raw: raw, gvk: gvk, org: org, item: -1}), nil
	}
	var l list
	if err := strictJSON(raw, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	for i, item := range l.Items {
		var itm typeMeta
		if err := json.Unmarshal(item, &itm); err != nil {
			return nil, fmt.Errorf("item %d: read apiVersion/kind: %w", i, err)
		}
		igvk := itm.APIVersion + "/" + itm.Kind
		switch {
		case itm.Kind == "" && itm.APIVersion == "" && itemKind != "":
			igvk = itemKind
		case itemKind != "" && igvk != itemKind:
			return nil, fmt.Errorf("item %d: %s in a %s", i, igvk, tm.Kind)
		}
		if _, ok := listKinds[igvk]; ok {
			return nil, fmt.Errorf("item %d: nested list %s", i, igvk)
		}
		if _, ok := kinds[igvk]; !ok {
			return nil, fmt.Errorf("item %d: %w", i, unknownKind(itm))
		}
		iorg := org
		iorg.Item = i
		units = append(units, unit{raw: item, gvk: igvk, org: iorg, item: i})
	}
	return units, nil
}

func unknownKind(tm typeMeta) error {
	return fmt.Errorf("unknown kind %q (apiVersion %q)", tm.Kind, tm.APIVersion)
}

// parallel runs fn(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next += 64
				mu.Unlock()
				if i >= n {
					return
				}
				for j := i; j < min(i+64, n); j++ {
					fn(j)
				}
			}
		})
	}
	wg.Wait()
}

// strictJSON decodes one JSON value the way the API server does: field
// names are case-sensitive ("podIp" is not "podIP", which encoding/json would
// accept), unknown and duplicate fields are errors.
func strictJSON(raw []byte, v any) error {
	strict, err := k8sjson.UnmarshalStrict(raw, v, k8sjson.DisallowUnknownFields, k8sjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func firstRune(b []byte) string {
	for _, r := range string(b) {
		return string(r)
	}
	return ""
}
