// Package aggregate turns the kernel's cumulative flow counters into
// flowlens.v1.Flow records: verdict inference, flow IDs and record fields.
//
// bpf owns the kernel side (programs, maps, attaching, link watching, raw
// decoding); this package reads its flow table every flush interval and at
// once when a flow is first dropped, through the Kernel interface it
// declares. The record rules live in records.go (aggregator) and are
// unit-tested against a fake table; the privileged tests run them against
// the real programs in a lab network namespace.
package aggregate
