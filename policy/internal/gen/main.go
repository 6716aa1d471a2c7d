// Command gen writes a synthetic cluster (cluster.json), policy set
// (policies.yaml) and queries (queries.json) for timing `flowlens policy
// eval`:
//
//	go run ./policy/internal/gen -out /tmp/bench
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/yaml"

	"github.com/flowlens/flowlens/policy/internal/synth"
)

func main() {
	out := flag.String("out", "", "output directory (created)")
	nss := flag.Int("namespaces", 50, "namespaces")
	pods := flag.Int("pods", 5000, "pods")
	pols := flag.Int("policies", 1000, "policies")
	queries := flag.Int("queries", 1_000_000, "queries")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gen: -out is required")
		os.Exit(2)
	}
	if err := run(*out, synth.Config{Namespaces: *nss, Pods: *pods, Policies: *pols, Seed: *seed}, *queries); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string, cfg synth.Config, nq int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c := synth.Generate(cfg)
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
	for i, q := range synth.Queries(c, nq, cfg.Seed) {
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
