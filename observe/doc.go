// Package observe is the client side of the Observer API: the `flowlens
// observe` and `flowlens status` commands, their filter flags (modelled on
// `hubble observe`), the output printers, and the port-forward to agent pods.
package observe
