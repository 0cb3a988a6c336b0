package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rogpeppe/go-internal/testscript"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
)

// craftBundle is the script command
//
//	craftbundle MODE IN OUT [ARG]
//
// which writes OUT, a well-formed bundle (valid tar, SHA256SUMS, index)
// that a hostile medium could carry, from IN, a bundle stella wrote with
// one pack (and its signatures):
//
//   - twice REF: every entry of IN, plus the pack listed again under REF;
//   - title N TITLE: the pack only, its N-th file layer (0-based, in
//     manifest order) retitled TITLE (so unsigned: IN's signatures are for
//     the original digest);
//   - squat KIND: only an artifact of KIND (evidence, approval-request,
//     approval-response, signature), of its own artifactType, listed under
//     the pack's ref.
//
// $CRAFTED is set to the digest of the last entry written (the crafted
// manifest, or the pack listed again).
func craftBundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: craftbundle twice|title|squat IN OUT [ARG...]")
	}
	ctx := context.Background()
	r, err := bundle.Open(ctx, ts.MkAbs(args[1]), bundle.OpenOptions{})
	if err != nil {
		ts.Fatalf("craftbundle: %v", err)
	}
	defer r.Close()
	var pk bundle.Entry
	for _, e := range r.Entries() {
		if e.Kind == artifact.KindPack {
			pk = e
		}
	}
	if pk.Ref == "" {
		ts.Fatalf("craftbundle: %s holds no pack", args[1])
	}
	src := &overlay{mem: memory.New(), base: r}
	var entries []bundle.Entry
	switch mode, rest := args[0], args[3:]; {
	case mode == "twice" && len(rest) == 1:
		entries = append(r.Entries(), bundle.Entry{Descriptor: pk.Descriptor, Kind: artifact.KindPack, Ref: rest[0]})
	case mode == "title" && len(rest) == 2:
		var m ocispec.Manifest
		b, err := content.FetchAll(ctx, r, pk.Descriptor)
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			ts.Fatalf("craftbundle: %v", err)
		}
		var n int
		if _, err := fmt.Sscan(rest[0], &n); err != nil || n < 0 || n >= len(m.Layers) {
			ts.Fatalf("craftbundle: layer %q of %d", rest[0], len(m.Layers))
		}
		m.Layers[n].Annotations[artifact.AnnotationTitle] = rest[1]
		entries = []bundle.Entry{{Descriptor: src.push(ts, ocispec.MediaTypeImageManifest, m), Kind: artifact.KindPack, Ref: pk.Ref}}
	case mode == "squat" && len(rest) == 1:
		layerType := map[string]string{
			artifact.KindEvidence: artifact.MediaTypeEvidence, artifact.KindApprovalRequest: artifact.MediaTypeApprovalRequest,
			artifact.KindApprovalResponse: artifact.MediaTypeApprovalResponse, artifact.KindSignature: artifact.MediaTypeDSSE,
		}[rest[0]]
		if layerType == "" {
			ts.Fatalf("craftbundle: kind %q", rest[0])
		}
		empty := src.push(ts, artifact.MediaTypeEmptyJSON, struct{}{})
		layer := src.push(ts, layerType, map[string]string{"squatting": pk.Ref})
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			ArtifactType: map[string]string{artifact.KindEvidence: artifact.ArtifactTypeEvidence, artifact.KindApprovalRequest: artifact.ArtifactTypeApprovalRequest,
				artifact.KindApprovalResponse: artifact.ArtifactTypeApprovalResponse, artifact.KindSignature: artifact.ArtifactTypeSignature}[rest[0]],
			Config: empty, Layers: []ocispec.Descriptor{layer}}
		entries = []bundle.Entry{{Descriptor: src.push(ts, ocispec.MediaTypeImageManifest, m), Kind: rest[0], Ref: pk.Ref}}
	default:
		ts.Fatalf("craftbundle: unknown mode or arguments %q", args)
	}
	if _, err := bundle.WriteFile(ctx, ts.MkAbs(args[2]), src, entries, bundle.WriteOptions{}); err != nil {
		ts.Fatalf("craftbundle: write %s: %v", args[2], err)
	}
	ts.Setenv("CRAFTED", entries[len(entries)-1].Descriptor.Digest.String())
}

// overlay serves crafted blobs, then the original bundle's.
type overlay struct {
	mem  *memory.Store
	base content.Fetcher
}

func (o *overlay) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if ok, _ := o.mem.Exists(ctx, d); ok {
		return o.mem.Fetch(ctx, d)
	}
	return o.base.Fetch(ctx, d)
}

// push stores v as JSON of media type mt and returns its descriptor.
func (o *overlay) push(ts *testscript.TestScript, mt string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		ts.Fatalf("craftbundle: %v", err)
	}
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if m, ok := v.(ocispec.Manifest); ok {
		d.ArtifactType = m.ArtifactType
	}
	if ok, _ := o.mem.Exists(context.Background(), d); !ok {
		if err := o.mem.Push(context.Background(), d, bytes.NewReader(b)); err != nil {
			ts.Fatalf("craftbundle: %v", err)
		}
	}
	return d
}
