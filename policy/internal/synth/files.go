package synth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/yaml"
)

// WriteFiles writes a generated cluster (cluster.json, as `kubectl get
// ns,pods -A -o json` would), its policies (policies.yaml) and nq queries
// (queries.json) into dir, for timing `flowlens policy eval`.
func WriteFiles(dir string, cfg Config, nq int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := Generate(cfg)
	var objs []any
	for _, n := range c.Namespaces {
		objs = append(objs, n)
	}
	for _, p := range c.Pods {
		objs = append(objs, p)
	}
	// The cluster is written the way `kubectl get ns,pods -A -o json` dumps
	// one: a JSON v1 List.
	if err := writeList(filepath.Join(dir, "cluster.json"), objs); err != nil {
		return err
	}
	objs = objs[:0]
	for _, p := range c.Policies {
		objs = append(objs, p)
	}
	if err := writeYAML(filepath.Join(dir, "policies.yaml"), objs); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "queries.json"))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	w.WriteString("[\n")
	for i, q := range Queries(c, nq, cfg.Seed) {
		if i > 0 {
			w.WriteString(",\n")
		}
		fmt.Fprintf(w, `{"src":%s,"dst":%s,"port":%d,"protocol":%q}`, strconv.Quote(q.Src), strconv.Quote(q.Dst), q.Port, q.Protocol)
	}
	w.WriteString("\n]\n")
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func writeList(path string, objs []any) error {
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func writeYAML(path string, objs []any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		w.WriteString("---\n")
		w.Write(b)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
