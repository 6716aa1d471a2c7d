package enrich

import (
	"net/netip"
	"testing"
	"time"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseNamedCIDRs(t *testing.T) {
	tests := []struct {
		name    string
		specs   []string
		want    map[string]netip.Prefix
		wantErr string
	}{
		{name: "homelab", specs: []string{"proxmox=10.0.1.10/32", "minio=10.0.40.10", "lan=192.168.0.0/16", " v6 = fd00::/8 "},
			want: map[string]netip.Prefix{
				"proxmox": netip.MustParsePrefix("10.0.1.10/32"), "minio": netip.MustParsePrefix("10.0.40.10/32"),
				"lan": netip.MustParsePrefix("192.168.0.0/16"), "v6": netip.MustParsePrefix("fd00::/8"),
			}},
		{name: "host bits masked", specs: []string{"lan=192.168.1.1/16"}, want: map[string]netip.Prefix{"lan": netip.MustParsePrefix("192.168.0.0/16")}},
		{name: "empty", specs: nil, want: map[string]netip.Prefix{}},
		{name: "no equals", specs: []string{"proxmox"}, wantErr: `named CIDR "proxmox": want name=prefix`},
		{name: "no name", specs: []string{"=10.0.0.0/8"}, wantErr: `named CIDR "=10.0.0.0/8"`},
		{name: "bad prefix", specs: []string{"lan=192.168.0.0/33"}, wantErr: `named CIDR "lan=192.168.0.0/33": parse prefix`},
		{name: "bad address", specs: []string{"nas=nas.local"}, wantErr: `named CIDR "nas=nas.local": parse address`},
		{name: "duplicate", specs: []string{"a=10.0.0.0/8", "a=11.0.0.0/8"}, wantErr: `name "a" given twice`},
		{name: "bad name", specs: []string{"a b=10.0.0.0/8"}, wantErr: `may not contain`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNamedCIDRs(tt.specs)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestLookupNamedCIDRsAndWorld(t *testing.T) {
	named, err := ParseNamedCIDRs([]string{"proxmox=10.0.1.10/32", "minio=10.0.40.10/32", "lan=10.0.0.0/16", "home=10.0.0.0/8", "v6lan=fd00::/8"})
	require.NoError(t, err)
	ix := newIndex(Config{NamedCIDRs: named, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")}})
	tests := []struct {
		ip   string
		kind flowlensv1.EndpointKind
		name string
	}{
		{"10.0.1.10", flowlensv1.EndpointKind_CIDR, "proxmox"}, // most specific wins
		{"10.0.40.10", flowlensv1.EndpointKind_CIDR, "minio"},
		{"10.0.2.2", flowlensv1.EndpointKind_CIDR, "lan"},
		{"10.1.0.1", flowlensv1.EndpointKind_CIDR, "home"},
		{"::ffff:10.0.1.10", flowlensv1.EndpointKind_CIDR, "proxmox"},
		{"fd00::1", flowlensv1.EndpointKind_CIDR, "v6lan"},
		{"10.42.3.3", flowlensv1.EndpointKind_CIDR, "home"}, // named CIDRs before cluster ranges
		{"8.8.8.8", flowlensv1.EndpointKind_WORLD, ""},
		{"2001:db8::1", flowlensv1.EndpointKind_WORLD, ""},
	}
	for _, tt := range tests {
		id := ix.Lookup(addr(tt.ip), time.Now())
		assert.Equal(t, tt.kind, id.Kind, tt.ip)
		assert.Equal(t, tt.name, id.Name, tt.ip)
	}
	ix2 := newIndex(Config{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")}})
	id := ix2.Lookup(addr("10.42.3.3"), time.Now())
	assert.Equal(t, flowlensv1.EndpointKind_ENDPOINT_KIND_UNSPECIFIED, id.Kind, "an unknown cluster address is not the world")
	assert.False(t, id.Known())
}
