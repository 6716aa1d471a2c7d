package policy

import "net/netip"

// addrIndex maps pod addresses to pod indexes. IPv4 addresses are keyed by
// their four bytes: a netip.Addr key is 24 bytes (128 bits and a zone
// handle), and at 5,000 pods the map is most of the engine's index.
// Addresses are unmapped before they get here.
type addrIndex struct {
	v4 map[[4]byte]int32
	v6 map[netip.Addr]int32
}

func newAddrIndex() addrIndex {
	return addrIndex{v4: map[[4]byte]int32{}, v6: map[netip.Addr]int32{}}
}

func (x addrIndex) get(a netip.Addr) (int32, bool) {
	if a.Is4() {
		i, ok := x.v4[a.As4()]
		return i, ok
	}
	i, ok := x.v6[a]
	return i, ok
}

func (x addrIndex) set(a netip.Addr, i int32) {
	if a.Is4() {
		x.v4[a.As4()] = i
		return
	}
	x.v6[a] = i
}
