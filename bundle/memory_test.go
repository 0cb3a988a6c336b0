package bundle

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/artifact"
)

// TestOpenHoldsNoAnnotations: what an open bundle holds does not grow with
// the annotations of its manifests and layers (here 4 KiB on each
// manifest and each pack file), which no check at open needs and which
// the reader reads again when asked. An import holds the bundle open for
// its whole run: with every annotation parsed, a bundle of 10,000 small
// packs held ~43 MiB (issue 13). The heap the reader keeps is measured
// after a GC, not timed; the annotations it gives back are checked too.
func TestOpenHoldsNoAnnotations(t *testing.T) {
	ctx := context.Background()
	const n = 200
	note := strings.Repeat("x", 4<<10)
	f := newFixture(t)
	cfg := f.blob(artifact.MediaTypePackConfig, []byte(`{}`), nil)
	var entries []Entry
	var first, sig ocispec.Descriptor
	for i := range n {
		id := fmt.Sprintf("p%03d", i)
		yaml := f.blob(artifact.MediaTypePackFile, []byte("name: "+id+"\n"), map[string]string{artifact.AnnotationTitle: "pack.yaml", "org.example.note": note})
		run := f.blob(artifact.MediaTypePackFile, []byte("echo "+id+"\n"), map[string]string{artifact.AnnotationTitle: "run.sh", "org.example.note": note})
		p := f.manifestAnnotated(artifact.ArtifactTypePack, &cfg, nil, map[string]string{artifact.AnnotationRef: id + ":1.0.0", "org.example.note": note}, yaml, run)
		entries = append(entries, Entry{Descriptor: p, Kind: artifact.KindPack, Ref: id + ":1.0.0"})
		if i == 0 {
			first = p
			sig = f.signature(p)
			entries = append(entries, Entry{Descriptor: sig, Kind: artifact.KindSignature})
		}
	}
	b, _ := writeBundle(t, f, entries, WriteOptions{})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := load(ctx, bytes.NewReader(b), int64(len(b)), false, defaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(r)
	t.Logf("an open bundle holds %d bytes per pack", held/n)
	if per := held / n; per > 4<<10 {
		t.Errorf("an open bundle holds %d bytes per pack (%d in all), want at most 4 KiB: it keeps annotations no check needs", per, held)
	}

	// What it gives back is what the bundle holds.
	d, err := r.Resolve(ctx, string(first.Digest))
	if err != nil || d.Digest != first.Digest || d.Annotations["org.example.note"] != note || d.Annotations[artifact.AnnotationRef] != "p000:1.0.0" {
		t.Fatalf("Resolve(%s) = %s with %d annotations, %v: want the manifest's annotations", first.Digest, d.Digest, len(d.Annotations), err)
	}
	d, err = r.Resolve(ctx, "p000:1.0.0")
	want := map[string]string{artifact.AnnotationKind: artifact.KindPack, artifact.AnnotationRef: "p000:1.0.0", ocispec.AnnotationRefName: "p000:1.0.0"}
	if err != nil || d.Digest != first.Digest || !maps.Equal(d.Annotations, want) {
		t.Fatalf("Resolve(p000:1.0.0) = %s %v, %v: want %s with index.json's annotations", d.Digest, d.Annotations, err, first.Digest)
	}
	preds, err := r.Predecessors(ctx, first)
	if err != nil || len(preds) != 1 || preds[0].Digest != sig.Digest || preds[0].ArtifactType != artifact.ArtifactTypeSignature || preds[0].Annotations[artifact.AnnotationCreated] != fixedCreated {
		t.Fatalf("Predecessors(pack) = %v, %v: want its signature with its annotations", preds, err)
	}
	es := r.Entries()
	if len(es) != n+1 {
		t.Fatalf("%d entries, want %d", len(es), n+1)
	}
	for _, e := range es {
		want := map[string]string{artifact.AnnotationKind: e.Kind}
		if e.Ref != "" {
			want[artifact.AnnotationRef], want[ocispec.AnnotationRefName] = e.Ref, e.Ref
		}
		if !maps.Equal(e.Descriptor.Annotations, want) {
			t.Fatalf("entry %s: annotations %v, want %v", e.Descriptor.Digest, e.Descriptor.Annotations, want)
		}
		e.Descriptor.Annotations["changed"] = "by the caller"
	}
	if es2 := r.Entries(); es2[0].Descriptor.Annotations["changed"] != "" {
		t.Fatal("Entries shares its annotations with the caller")
	}
	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil || rep.Blobs != 3*n+3 || len(rep.Entries) != n+1 {
		t.Fatalf("Verify = %d blobs, %d entries, %v: want every blob checked", rep.Blobs, len(rep.Entries), err)
	}
	for _, e := range rep.Entries {
		if e.Descriptor.Annotations[artifact.AnnotationKind] != e.Kind {
			t.Fatalf("Verify's entry %s: annotations %v, want index.json's", e.Descriptor.Digest, e.Descriptor.Annotations)
		}
	}
}
