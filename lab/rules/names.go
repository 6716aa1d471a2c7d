package rules

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

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
