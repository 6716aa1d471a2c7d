// Package aggregate turns the kernel's cumulative flow counters into
// flow records: verdict inference, flow IDs and record fields. It sends
// them as values (Record); a FlowBuilder makes the flowlens.v1.Flow of one.
//
// bpf owns the kernel side (programs, maps, attaching, link watching, raw
// decoding); this package reads its flow table every flush interval and at
// once when a flow is first dropped, through the Kernel interface it
// declares. The record rules live in records.go (aggregator) and the
// proto a record makes in record.go; they are unit-tested against a fake
// table, and the privileged tests run them against the real programs in a
// lab network namespace.
package aggregate
