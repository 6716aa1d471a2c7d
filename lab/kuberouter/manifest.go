package kuberouter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Objects is what the controller needs from a cluster: the node, namespaces and pods from the
// cluster file, and the NetworkPolicies from the policy file(s).
type Objects struct {
	Nodes      []corev1.Node
	Namespaces []corev1.Namespace
	Pods       []corev1.Pod
	Policies   []networkingv1.NetworkPolicy
}

type typeMeta struct {
	Kind  string            `json:"kind"`
	Items []json.RawMessage `json:"items"` // undecoded until their kind is known
}

// LoadFiles reads every YAML document of the given files or directories (*.yaml, *.yml) into
// Objects. Kinds other than Node, Namespace, Pod, NetworkPolicy and their lists are ignored.
func LoadFiles(paths ...string) (*Objects, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		for _, e := range entries {
			if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(files)
	out := &Objects{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		docs, err := splitDocs(b)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", f, len(docs), err)
		}
		for i, doc := range docs {
			if err := out.add(doc); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, i, err)
			}
		}
	}
	return out, nil
}

// splitDocs cuts a YAML stream with apimachinery's reader and drops the documents that hold
// only comments (a file header), so document numbers count objects.
func splitDocs(b []byte) ([][]byte, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		for line := range bytes.Lines(doc) {
			if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
				docs = append(docs, doc)
				break
			}
		}
	}
}

func (o *Objects) add(doc []byte) error {
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	switch tm.Kind {
	case "Node":
		var v corev1.Node
		if err := yaml.UnmarshalStrict(doc, &v); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		o.Nodes = append(o.Nodes, v)
	case "Namespace":
		var v corev1.Namespace
		if err := yaml.UnmarshalStrict(doc, &v); err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
		o.Namespaces = append(o.Namespaces, v)
	case "Pod":
		var v corev1.Pod
		if err := yaml.UnmarshalStrict(doc, &v); err != nil {
			return fmt.Errorf("pod: %w", err)
		}
		o.Pods = append(o.Pods, v)
	case "NetworkPolicy":
		var v networkingv1.NetworkPolicy
		if err := yaml.UnmarshalStrict(doc, &v); err != nil {
			return fmt.Errorf("networkpolicy: %w", err)
		}
		o.Policies = append(o.Policies, v)
	case "List", "NodeList", "NamespaceList", "PodList", "NetworkPolicyList":
		item := strings.TrimSuffix(tm.Kind, "List")
		for i, raw := range tm.Items {
			if item != "" {
				// Items of a typed list may leave out their kind.
				var m map[string]any
				if err := yaml.Unmarshal(raw, &m); err != nil {
					return fmt.Errorf("items[%d]: %w", i, err)
				}
				if _, ok := m["kind"]; !ok {
					m["kind"] = item
				}
				b, err := yaml.Marshal(m)
				if err != nil {
					return fmt.Errorf("items[%d]: %w", i, err)
				}
				raw = b
			}
			if err := o.add(raw); err != nil {
				return fmt.Errorf("items[%d]: %w", i, err)
			}
		}
	case "":
		return fmt.Errorf("no kind")
	}
	return nil
}
