package netns

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
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

func ValidatePrefix(p string) error {
	if !prefixRe.MatchString(p) {
		return fmt.Errorf("prefix %q: want 2-12 characters, lowercase letters and digits, starting with a letter", p)
	}
	return nil
}

// randomVethName is how the CNI names host-side peers (plugins pkg/ip RandomVethName).
func RandomVethName() string { return "veth" + randomHex(4) }

func NodeNetNS(prefix string, index int) string { return fmt.Sprintf("%s-node%d", prefix, index) }

func PodNetNS(prefix, ns, pod string) string {
	name := fmt.Sprintf("%s-%s-%s", prefix, ns, pod)
	if len(name) <= maxNetNSName {
		return name
	}
	h := sha256.Sum256([]byte(ns + "/" + pod))
	suffix := "-" + hex.EncodeToString(h[:4])
	return name[:maxNetNSName-len(suffix)] + suffix
}

// ExtNetNS is the outside world's namespace name.
func ExtNetNS(prefix string) string { return prefix + "-ext" }
