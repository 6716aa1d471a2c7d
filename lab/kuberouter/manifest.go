package kuberouter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
		for i, doc := range splitDocs(b) {
			if err := out.add(doc); err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, i, err)
			}
		}
	}
	return out, nil
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimRight(line, " \t") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out.Write(l)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
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
