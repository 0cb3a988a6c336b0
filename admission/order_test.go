package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
)

// TestOrderBySubjectChains: long chains of referrers, listed in any order,
// come out each after its subject, every artifact exactly once; a referrer
// whose subject is not among them keeps its place among the ready ones.
func TestOrderBySubjectChains(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	push := func(b []byte, mt string) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if ok, _ := store.Exists(ctx, d); !ok {
			if err := store.Push(ctx, d, strings.NewReader(string(b))); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	refer := func(subject ocispec.Descriptor, n int) ocispec.Descriptor {
		push([]byte("{}"), ocispec.MediaTypeEmptyJSON)
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			ArtifactType: artifact.ArtifactTypeEvidence, Config: ocispec.DescriptorEmptyJSON, Subject: &subject,
			Annotations: map[string]string{"n": fmt.Sprint(n)}, Layers: []ocispec.Descriptor{}}
		b, _ := json.Marshal(m)
		return push(b, ocispec.MediaTypeImageManifest)
	}
	root := push([]byte(`{"schemaVersion":2}`), ocispec.MediaTypeImageManifest)
	absent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 1}
	arts := []cache.Artifact{{Descriptor: root, Kind: artifact.KindPack, Ref: "p:1"}}
	subject := map[digest.Digest]digest.Digest{}
	for _, base := range []ocispec.Descriptor{root, absent} {
		prev := base
		for i := range 300 {
			d := refer(prev, i)
			subject[d.Digest] = prev.Digest
			arts = append(arts, cache.Artifact{Descriptor: d, Kind: artifact.KindEvidence})
			prev = d
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3 {
		in := append([]cache.Artifact(nil), arts...)
		switch round {
		case 1: // reversed: the worst case of ordering pass by pass
			for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
				in[i], in[j] = in[j], in[i]
			}
		case 2:
			rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		}
		got := orderBySubject(ctx, store, in)
		if len(got) != len(in) {
			t.Fatalf("round %d: %d artifacts out of %d", round, len(got), len(in))
		}
		pos := map[digest.Digest]int{}
		for i, a := range got {
			if _, dup := pos[a.Descriptor.Digest]; dup {
				t.Fatalf("round %d: %s twice", round, a.Descriptor.Digest)
			}
			pos[a.Descriptor.Digest] = i
		}
		if got[0].Ref != "p:1" {
			t.Fatalf("round %d: the artifact with a ref is not first: %+v", round, got[0])
		}
		for d, s := range subject {
			if ps, ok := pos[s]; ok && ps > pos[d] {
				t.Fatalf("round %d: referrer %s at %d before its subject at %d", round, d, pos[d], ps)
			}
		}
	}
}
