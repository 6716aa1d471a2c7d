package bpf

// The generated bindings and objects are committed so that `go build` needs
// no clang; `make generate` reruns this and check-generated.sh / the
// TestGeneratedUpToDate test fail when they drift from the C sources.
//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type flow_key -type flow_stats -type drop_event -type lpm_key -type addr_key flowlens flowlens.c -- -I. -O2 -g -Wall -Werror
