// Package kuberouter holds the lab's second enforcer: the real kube-router network-policy
// controller (upstream v2.1.0), driven by client-go's fake clientset inside one node namespace.
//
// It is a Go module of its own so kube-router and its dependency versions never reach the main
// module. v2.1.0 is the only version the module proxy serves and is flagged for reported security
// flaws: it is TEST-ONLY and must never be linked into a shipped binary.
package kuberouter
