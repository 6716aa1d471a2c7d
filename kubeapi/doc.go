// Package kubeapi is the agent's Kubernetes API client: REST clients over a
// scheme of only the types the agent lists and watches, speaking protobuf.
//
// client-go's clientset (k8s.io/client-go/kubernetes) would link every API
// group and register all of them in its scheme at start-up, which costs the
// agent tens of megabytes of binary and resident set before it holds any
// state; its typed clients import that scheme too. Here each resource is a
// cache.ListerWatcher over a rest.RESTClient, ready for
// cache.NewSharedIndexInformer.
package kubeapi
