// Package scenario owns what a lab runs: the pods, services and NetworkPolicy intent of a small
// cluster (Scenario), its traffic cases, the world outside it, the built-in scenarios (the
// default one and the homelab of examples/homelab), and the cluster and policy YAML a lab
// writes for flowlens and kube-router to read.
//
// The intent is written twice by hand: as kube-router's view (Rules plus each pod's
// TargetOf/PeerOf memberships) and as real NetworkPolicy objects (Policies). The hand enforcer
// renders Rules; flowlens reads Policies; neither comes from flowlens's own policy engine.
package scenario
