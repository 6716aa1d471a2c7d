package kubeapi

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Protobuf is several times cheaper to decode than JSON for the initial list
// of thousands of pods; JSON stays acceptable for what a server answers only
// in JSON (/version, an aggregated API).
const (
	protobuf = "application/vnd.kubernetes.protobuf"
	accept   = protobuf + ",application/json"
)

// Client is the API server through one HTTP client: a REST client per group
// version of the scheme, and a metadata client for the resources of which
// only names and owners are read.
type Client struct {
	rest map[schema.GroupVersion]*rest.RESTClient
	meta metadata.Interface
}

// New builds the REST clients over cfg, which it does not modify.
func New(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = protobuf
	cfg.AcceptContentTypes = accept
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("build kubernetes HTTP client: %w", err)
	}
	codecs := serializer.NewCodecFactory(newScheme()).WithoutConversion()
	c := &Client{rest: map[schema.GroupVersion]*rest.RESTClient{}}
	for _, gv := range []schema.GroupVersion{Core, Networking, Discovery} {
		gcfg := rest.CopyConfig(cfg)
		gcfg.GroupVersion = &gv
		gcfg.APIPath = "/apis"
		if gv.Group == "" {
			gcfg.APIPath = "/api"
		}
		gcfg.NegotiatedSerializer = codecs
		rc, err := rest.RESTClientForConfigAndClient(gcfg, httpClient)
		if err != nil {
			return nil, fmt.Errorf("build kubernetes client for %s: %w", gv, err)
		}
		c.rest[gv] = rc
	}
	// The metadata client asks for PartialObjectMetadata, protobuf first.
	c.meta, err = metadata.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("build kubernetes metadata client: %w", err)
	}
	return c, nil
}

// ListWatch lists and watches resource (plural, lower case) of group
// version gv in all namespaces, as typed objects of the scheme.
func (c *Client) ListWatch(gv schema.GroupVersion, resource string) cache.ListerWatcher {
	rc, ok := c.rest[gv]
	if !ok {
		err := fmt.Errorf("list %s: group version %s is not in flowlens's scheme (kubeapi)", resource, gv)
		return &cache.ListWatch{
			ListWithContextFunc:  func(context.Context, metav1.ListOptions) (runtime.Object, error) { return nil, err },
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return nil, err },
		}
	}
	return cache.NewListWatchFromClient(rc, resource, metav1.NamespaceAll, fields.Everything())
}

// MetadataListWatch lists and watches resource in all namespaces as
// *metav1.PartialObjectMetadata: the API server sends names, labels and
// owners, not specs (a ReplicaSet's pod template), and no Go type of the
// resource's group is linked.
func (c *Client) MetadataListWatch(r schema.GroupVersionResource) cache.ListerWatcher {
	ri := c.meta.Resource(r).Namespace(metav1.NamespaceAll)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return ri.List(ctx, o)
		},
		WatchFuncWithContext: ri.Watch,
	}
}

// Version asks the API server for /version, which every client may read
// (system:public-info-viewer).
func (c *Client) Version(ctx context.Context) error {
	return c.rest[Core].Get().AbsPath("/version").Do(ctx).Error()
}
