// Command gen writes a synthetic cluster (cluster.json), policy set
// (policies.yaml) and queries (queries.json) for timing `flowlens policy
// eval`:
//
//	go run ./policy/internal/gen -out /tmp/bench
package main

import (
	"flag"
	"fmt"
	"os"

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
	if err := synth.WriteFiles(*out, synth.Config{Namespaces: *nss, Pods: *pods, Policies: *pols, Seed: *seed}, *queries); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
