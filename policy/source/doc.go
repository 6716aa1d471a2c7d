// Package source delivers the intended NetworkPolicy set while the agent
// runs: from files (reloaded when they change), from the cluster's own
// NetworkPolicy informer, and the drift between the two when both are
// known. It is kept apart from package policy so that the engine, which the
// CLI links, does not pull in client-go's informers.
package source
