package enrich

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// ParseNamedCIDRs parses "name=prefix" specs such as "proxmox=10.0.1.10/32"
// or "lan=192.168.0.0/16". A bare address is taken as a host prefix. Errors
// name the bad entry.
func ParseNamedCIDRs(specs []string) (map[string]netip.Prefix, error) {
	out := make(map[string]netip.Prefix, len(specs))
	for _, spec := range specs {
		name, cidr, ok := strings.Cut(strings.TrimSpace(spec), "=")
		name, cidr = strings.TrimSpace(name), strings.TrimSpace(cidr)
		if !ok || name == "" || cidr == "" {
			return nil, fmt.Errorf("named CIDR %q: want name=prefix, e.g. proxmox=10.0.1.10/32", spec)
		}
		if strings.ContainsAny(name, " \t/=,") {
			return nil, fmt.Errorf("named CIDR %q: name %q may not contain spaces, '/', '=' or ','", spec, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("named CIDR %q: name %q given twice", spec, name)
		}
		p, err := parsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("named CIDR %q: %w", spec, err)
		}
		out[name] = p
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse address: %w", err)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse prefix: %w", err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("prefix %s: write IPv4 prefixes in IPv4 form", s)
	}
	return p.Masked(), nil
}

// cidrTable is a longest-prefix-match table for the few named CIDRs a user
// configures: a slice sorted by prefix length, longest first, scanned
// linearly (faster than a trie for tens of entries, and allocation-free).
type cidrTable struct {
	entries []cidrEntry
}

type cidrEntry struct {
	prefix netip.Prefix
	id     *Identity
}

func newCIDRTable(named map[string]netip.Prefix) cidrTable {
	t := cidrTable{entries: make([]cidrEntry, 0, len(named))}
	for name, p := range named {
		id := (&Identity{Kind: flowlensv1.EndpointKind_CIDR, Name: name}).publish()
		t.entries = append(t.entries, cidrEntry{prefix: p, id: id})
	}
	sort.Slice(t.entries, func(i, j int) bool {
		a, b := t.entries[i], t.entries[j]
		if a.prefix.Bits() != b.prefix.Bits() {
			return a.prefix.Bits() > b.prefix.Bits()
		}
		// Same length: deterministic by name so overlapping equal prefixes
		// always resolve the same way.
		return a.id.Name < b.id.Name
	})
	return t
}

func (t *cidrTable) lookup(ip netip.Addr) (*Identity, bool) {
	for i := range t.entries {
		if t.entries[i].prefix.Contains(ip) {
			return t.entries[i].id, true
		}
	}
	return nil, false
}
