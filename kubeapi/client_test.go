package kubeapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	restwatch "k8s.io/client-go/rest/watch"
	"k8s.io/client-go/tools/cache"
)

// apiServer answers as kube-apiserver does: pods in protobuf (list and
// watch), ReplicaSets as PartialObjectMetadata in JSON, /version in JSON.
// It records the Accept header of each path. Its handler asserts, not
// requires: it runs outside the test's goroutine.
type apiServer struct {
	*httptest.Server
	mu     sync.Mutex
	accept map[string]string
}

func newAPIServer(t *testing.T) *apiServer {
	codecs := serializer.NewCodecFactory(newScheme())
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), protobuf)
	require.True(t, ok)
	enc := codecs.EncoderForVersion(info.Serializer, Core)
	pod := func(name string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: name, ResourceVersion: "11"},
			Status: corev1.PodStatus{PodIP: "10.42.0.5"}}
	}
	s := &apiServer{accept: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.accept[r.URL.Path] = r.Header.Get("Accept")
		s.mu.Unlock()
		switch {
		case r.URL.Path == "/version":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"major":"1","minor":"34","gitVersion":"v1.34.4"}`))
		case r.URL.Path == "/api/v1/pods" && r.URL.Query().Get("watch") == "true":
			w.Header().Set("Content-Type", protobuf+";stream=watch")
			w.WriteHeader(http.StatusOK)
			ev := restwatch.NewEncoder(streaming.NewEncoder(info.StreamSerializer.Framer.NewFrameWriter(w), info.StreamSerializer.Serializer), enc)
			p := pod("new")
			assert.NoError(t, ev.Encode(&watch.Event{Type: watch.Added, Object: &p}))
		case r.URL.Path == "/api/v1/pods":
			w.Header().Set("Content-Type", protobuf)
			assert.NoError(t, enc.Encode(&corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "10"}, Items: []corev1.Pod{pod("web")}}, w))
		case r.URL.Path == "/apis/apps/v1/replicasets":
			w.Header().Set("Content-Type", "application/json")
			assert.NoError(t, json.NewEncoder(w).Encode(metav1.PartialObjectMetadataList{
				TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadataList"},
				Items: []metav1.PartialObjectMetadata{{
					TypeMeta:   metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "PartialObjectMetadata"},
					ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web-5d8f"},
				}},
			}))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) acceptOf(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accept[path]
}

func TestClientSpeaksProtobufWithOnlyItsScheme(t *testing.T) {
	srv := newAPIServer(t)
	c, err := New(&rest.Config{Host: srv.URL})
	require.NoError(t, err)
	ctx := context.Background()
	pods := cache.ToListerWatcherWithContext(c.ListWatch(Core, "pods"))

	list, err := pods.ListWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.IsType(t, &corev1.PodList{}, list)
	assert.Equal(t, "10", list.(*corev1.PodList).ResourceVersion)
	assert.Equal(t, "web", list.(*corev1.PodList).Items[0].Name)
	assert.Equal(t, protobuf+",application/json", srv.acceptOf("/api/v1/pods"), "protobuf first, JSON as fallback")

	w, err := pods.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "10"})
	require.NoError(t, err)
	defer w.Stop()
	ev := <-w.ResultChan()
	assert.Equal(t, watch.Added, ev.Type)
	require.IsType(t, &corev1.Pod{}, ev.Object)
	assert.Equal(t, "new", ev.Object.(*corev1.Pod).Name)

	rs := cache.ToListerWatcherWithContext(c.MetadataListWatch(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}))
	meta, err := rs.ListWithContext(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.IsType(t, &metav1.PartialObjectMetadataList{}, meta)
	assert.Equal(t, "web-5d8f", meta.(*metav1.PartialObjectMetadataList).Items[0].Name)
	assert.Contains(t, srv.acceptOf("/apis/apps/v1/replicasets"), "as=PartialObjectMetadataList", "only metadata is asked for")

	require.NoError(t, c.Version(ctx))
	srv.Close()
	assert.Error(t, c.Version(ctx), "the probe fails once the API server is gone")
}

func TestListWatchOfAGroupOutsideTheScheme(t *testing.T) {
	c, err := New(&rest.Config{Host: "http://127.0.0.1:1"})
	require.NoError(t, err)
	lw := cache.ToListerWatcherWithContext(c.ListWatch(schema.GroupVersion{Group: "apps", Version: "v1"}, "deployments"))
	_, err = lw.ListWithContext(context.Background(), metav1.ListOptions{})
	assert.ErrorContains(t, err, "not in flowlens's scheme")
}
