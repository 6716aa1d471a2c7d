package lab

import (
	"encoding/json"
	"fmt"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"log/slog"
	"os"
)

// State is what `flowlens-lab up` records so that later commands (traffic, status, down) can find
// the lab again from another process.
type State struct {
	Prefix string          `json:"prefix"`
	Nodes  []*netns.Node   `json:"nodes"`
	Pods   []*scenario.Pod `json:"pods"`  // with each pod's spec
	NetNS  []string        `json:"netns"` // every namespace created, in creation order
	// ExtNS is the outside-world namespace, when the lab has one.
	ExtNS    string             `json:"extNS,omitempty"`
	Scenario *scenario.Scenario `json:"scenario"`
}

// State describes the lab for a later Attach.
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := State{Prefix: l.prefix, Nodes: l.nodes, NetNS: append([]string(nil), l.netns...), Scenario: l.scenario, ExtNS: l.extNS}
	st.Pods = append(st.Pods, l.pods...)
	return st
}

// Attach returns a Lab for a lab built earlier (possibly by another process). It creates nothing;
// Close on it removes what the state lists.
func Attach(st State, log *slog.Logger) (*Lab, error) {
	if err := netns.ValidatePrefix(st.Prefix); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if st.Scenario == nil || len(st.Nodes) == 0 {
		return nil, fmt.Errorf("state of lab %s: no scenario or no nodes", st.Prefix)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{prefix: st.Prefix, log: log.With("lab", st.Prefix), scenario: st.Scenario,
		netns: st.NetNS, nextIP: map[int]int{}, extNS: st.ExtNS}
	for i, n := range st.Nodes {
		n.Index = i + 1
		l.nodes = append(l.nodes, n)
	}
	for i, p := range st.Pods {
		if p == nil || p.Pod == nil {
			return nil, fmt.Errorf("state of lab %s: pods[%d] is empty", st.Prefix, i)
		}
		l.pods = append(l.pods, p)
	}
	return l, nil
}

// SaveState writes st as JSON to path.
func SaveState(path string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// LoadState reads a State written by SaveState.
func LoadState(path string) (State, error) {
	var st State
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read lab state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse lab state %s: %w", path, err)
	}
	return st, nil
}
