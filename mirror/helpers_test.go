package mirror_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/auth"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

const (
	testRef     = "demo:1.0.0"
	testCreated = "2024-01-01T00:00:00Z"
)

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fixture is a pack artifact and its signature in a memory store.
type fixture struct {
	store     *memory.Store
	pack      ocispec.Descriptor // manifest, with ArtifactType
	sig       ocispec.Descriptor
	config    ocispec.Descriptor
	layers    []ocispec.Descriptor // layers[0] and layers[1] have the same size
	dsse      ocispec.Descriptor
	blobs     map[digest.Digest][]byte
	packBytes int64 // bytes of the pack's graph (manifest, config, layers)
	sigBytes  int64 // bytes of the signature's graph (manifest, config, layer)
}

// newFixture builds a pack artifact with three file layers (the first two of equal size)
// and a signature referrer (artifactType signature, subject the pack, one DSSE layer).
func newFixture(t testing.TB, layerSizes ...int) *fixture {
	t.Helper()
	if len(layerSizes) == 0 {
		layerSizes = []int{64 << 10, 64 << 10, 10 << 10}
	}
	ctx := context.Background()
	f := &fixture{store: memory.New(), blobs: map[digest.Digest][]byte{}}
	push := func(mediaType string, data []byte) ocispec.Descriptor {
		d := content.NewDescriptorFromBytes(mediaType, data)
		if err := f.store.Push(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		f.blobs[d.Digest] = data
		return d
	}
	f.config = push(artifact.MediaTypePackConfig, []byte(`{"apiVersion":"stellaops.io/pack.v1","files":[],"name":"demo","version":"1.0.0"}`))
	f.packBytes = f.config.Size
	for i, n := range layerSizes {
		data := make([]byte, n)
		_, _ = rand.Read(data)
		l := push(artifact.MediaTypePackFile, data)
		l.Annotations = map[string]string{artifact.AnnotationTitle: "files/layer-" + string(rune('a'+i))}
		f.layers = append(f.layers, l)
		f.packBytes += l.Size
	}
	f.pack = f.pushManifest(t, push, ocispec.Manifest{
		ArtifactType: artifact.ArtifactTypePack,
		Config:       f.config,
		Layers:       f.layers,
		Annotations:  map[string]string{artifact.AnnotationRef: testRef, artifact.AnnotationCreated: testCreated},
	})
	f.packBytes += f.pack.Size
	empty := push(artifact.MediaTypeEmptyJSON, []byte("{}"))
	f.dsse = push(artifact.MediaTypeDSSE, []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"test","sig":"c2ln"}]}`))
	subject := plainDesc(f.pack)
	f.sig = f.pushManifest(t, push, ocispec.Manifest{
		ArtifactType: artifact.ArtifactTypeSignature,
		Config:       empty,
		Layers:       []ocispec.Descriptor{f.dsse},
		Subject:      &subject,
		Annotations:  map[string]string{artifact.AnnotationCreated: testCreated},
	})
	f.sigBytes = f.sig.Size + empty.Size + f.dsse.Size
	return f
}

func (f *fixture) pushManifest(t testing.TB, push func(string, []byte) ocispec.Descriptor, m ocispec.Manifest) ocispec.Descriptor {
	t.Helper()
	m.Versioned = specs.Versioned{SchemaVersion: 2}
	m.MediaType = ocispec.MediaTypeImageManifest
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := push(ocispec.MediaTypeImageManifest, data)
	d.ArtifactType = m.ArtifactType
	return d
}

func plainDesc(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

// optionsFor reaches r with its CA and credentials and retries fast.
func optionsFor(r *regtest.Registry) mirror.Options {
	o := mirror.Options{
		PlainHTTP: r.PlainHTTP,
		CAFile:    r.CAFile,
		Retry:     mirror.Retry{Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
	}
	if r.Username != "" {
		o.Credential = auth.StaticCredential(r.Host, auth.Credential{Username: r.Username, Password: r.Password})
	}
	return o
}

func mustRef(t testing.TB, s string) mirror.Reference {
	t.Helper()
	ref, err := mirror.ParseRef(s)
	if err != nil {
		t.Fatalf("ParseRef(%q): %v", s, err)
	}
	return ref
}

// referrersAt lists the referrers of subject in repo name of r through a fresh client.
func referrersAt(t testing.TB, r *regtest.Registry, name string, subject ocispec.Descriptor) []digest.Digest {
	t.Helper()
	list, err := registry.Referrers(testContext(t), r.Repository(t, name), plainDesc(subject), "")
	if err != nil {
		t.Fatalf("list referrers of %s in %s: %v", subject.Digest, name, err)
	}
	var out []digest.Digest
	for _, d := range list {
		out = append(out, d.Digest)
	}
	return out
}

// events records progress events.
type events struct {
	mu  sync.Mutex
	all []mirror.Event
}

func (e *events) add(ev mirror.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) count(kind mirror.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// deleteBlob removes a blob from a repository through the registry API.
func deleteBlob(t testing.TB, r *regtest.Registry, name string, d digest.Digest) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodDelete, r.URL+"/v2/"+name+"/blobs/"+d.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Username != "" {
		req.SetBasicAuth(r.Username, r.Password)
	}
	resp, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE blob %s: %s", d, resp.Status)
	}
}

// graphStorage adds Predecessors to a read-only storage, for sources that
// hold no referrers of their own (a pack being built), and serves extra
// content (a signature) from a memory store.
type graphStorage struct {
	content.ReadOnlyStorage
	extra *memory.Store
}

func (g *graphStorage) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if ok, _ := g.extra.Exists(ctx, d); ok {
		return g.extra.Fetch(ctx, d)
	}
	return g.ReadOnlyStorage.Fetch(ctx, d)
}

func (g *graphStorage) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	if ok, _ := g.extra.Exists(ctx, d); ok {
		return true, nil
	}
	return g.ReadOnlyStorage.Exists(ctx, d)
}

func (g *graphStorage) Predecessors(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return g.extra.Predecessors(ctx, d)
}

// noSecret fails the test if s contains secret.
func noSecret(t testing.TB, what, s, secret string) {
	t.Helper()
	if strings.Contains(s, secret) {
		t.Errorf("%s contains the password: %s", what, s)
	}
}

// errorStrings is every message in an error tree.
func errorStrings(err error) []string {
	if err == nil {
		return nil
	}
	out := []string{err.Error()}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, errorStrings(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, errorStrings(e)...)
		}
	}
	return out
}
