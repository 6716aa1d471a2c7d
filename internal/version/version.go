// Package version holds the flowlens release, set at build time. It is its
// own package so the CLI can print it without linking the daemon.
package version

// Version is set with -ldflags "-X github.com/flowlens/flowlens/internal/version.Version=...".
var Version = "dev"
