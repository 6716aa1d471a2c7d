package lab

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// prefixRe keeps prefixes short enough for namespace names and safe in file names and shell argv.
var prefixRe = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}$`)

// maxNetNSName keeps pod namespace names readable in `ip netns list`; longer names are shortened
// with a hash so two pods never collide.
const maxNetNSName = 48

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}

// NewPrefix returns "fl" followed by 4 random hex digits.
func NewPrefix() string { return "fl" + randomHex(2) }

func validatePrefix(p string) error {
	if !prefixRe.MatchString(p) {
		return fmt.Errorf("prefix %q: want 2-12 characters, lowercase letters and digits, starting with a letter", p)
	}
	return nil
}

// randomVethName is how the CNI names host-side peers (plugins pkg/ip RandomVethName).
func randomVethName() string { return "veth" + randomHex(4) }

func nodeNetNS(prefix string, index int) string { return fmt.Sprintf("%s-node%d", prefix, index) }

func podNetNS(prefix, ns, pod string) string {
	name := fmt.Sprintf("%s-%s-%s", prefix, ns, pod)
	if len(name) <= maxNetNSName {
		return name
	}
	h := sha256.Sum256([]byte(ns + "/" + pod))
	suffix := "-" + hex.EncodeToString(h[:4])
	return name[:maxNetNSName-len(suffix)] + suffix
}

// krHash is kube-router's name hash: base32(sha256(s)) cut to 16 characters.
func krHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

func podChainName(ns, pod, syncVersion string) string {
	return "KUBE-POD-FW-" + krHash(ns+pod+syncVersion)
}

func policyChainName(ns, name, syncVersion string) string {
	return "KUBE-NWPLCY-" + krHash(ns+name+syncVersion+"IPv4")
}

// Stable ipset names, as kube-router builds them (they do not include the sync version).
func ingressTargetSet(ns, name string) string { return "KUBE-DST-" + krHash(ns+name+"IPv4") }
func egressTargetSet(ns, name string) string  { return "KUBE-SRC-" + krHash(ns+name+"IPv4") }
func ingressPeerSet(ns, name string, idx int) string {
	return "KUBE-SRC-" + krHash(fmt.Sprintf("%s%singressrule%dIPv4pod", ns, name, idx))
}
func egressPeerSet(ns, name string, idx int) string {
	return "KUBE-DST-" + krHash(fmt.Sprintf("%s%segressrule%dIPv4pod", ns, name, idx))
}

// kube-proxy chain names: base32(sha256(servicePortName + protocol [+ endpoint]))[:16].
func svcChainName(svcPortName, proto string) string {
	return "KUBE-SVC-" + krHash(svcPortName+strings.ToLower(proto))
}
func sepChainName(svcPortName, proto, endpoint string) string {
	return "KUBE-SEP-" + krHash(svcPortName+strings.ToLower(proto)+endpoint)
}
