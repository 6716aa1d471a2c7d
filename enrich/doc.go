// Package enrich answers "who is this IP, at this moment?" for the flow
// pipeline: pods (with namespace, labels, workload and node), this node and
// other nodes (including hostNetwork pods, which are never named as pods),
// ClusterIP Services and their EndpointSlice backends, named external CIDRs
// from configuration, and the world.
//
// Two sources implement Resolver over one index: Kube (client-go informers,
// slimmed with a transform) and Static (objects loaded from YAML by package
// manifest, for the lab and standalone use). Lookups are keyed by netip.Addr,
// safe for concurrent use and do not allocate.
package enrich
