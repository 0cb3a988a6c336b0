package integrity

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// plainSamples are manifests and an index as encoding/json writes them.
func plainSamples(t testing.TB) map[string][]byte {
	layer := func(i int) ocispec.Descriptor {
		p := fmt.Sprintf("d%03d/f%05d.bin", i/100, i)
		return ocispec.Descriptor{MediaType: "application/vnd.stellaops.pack.file.v1", Digest: digest.FromString(p), Size: int64(i * 37),
			Annotations: map[string]string{"org.opencontainers.image.title": p, "io.stellaops.file.mode": "0644"}}
	}
	var layers []ocispec.Descriptor
	for i := range 300 {
		layers = append(layers, layer(i))
	}
	cfg := ocispec.Descriptor{MediaType: "application/vnd.stellaops.pack.config.v1+json", Digest: digest.FromString("{}"), Size: 2}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.stellaops.pack.v1", Config: cfg, Layers: layers,
		Subject: &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s"), Size: 9}, Annotations: map[string]string{"a": "1", "b": ""}}
	m.SchemaVersion = 2
	bare := ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{}}
	bare.SchemaVersion = 2
	small := m
	small.Layers = layers[:4]
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: layers[:3]}
	idx.SchemaVersion = 2
	out := map[string][]byte{}
	for name, v := range map[string]any{"manifest": m, "small": small, "bare": bare, "index": idx} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

// samePlain fails when decodePlain accepts b and json.Unmarshal does not
// decode it to the same document.
func samePlain(t testing.TB, b []byte) bool {
	var fast, slow manifestDoc
	if !fast.decodePlain(b) {
		return false
	}
	if err := json.Unmarshal(b, &slow); err != nil {
		t.Fatalf("decodePlain took what json.Unmarshal refuses (%v): %.200s", err, b)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("decodePlain and json.Unmarshal differ on %.200s:\n%+v\n%+v", b, fast, slow)
	}
	return true
}

// TestDecodePlainIsUnmarshal: what encoding/json writes is decoded by
// the plain path, to what json.Unmarshal gives; of 100,000 random edits
// of it, each the plain path takes is decoded the same too, and it
// leaves alone what it must (spaces, escapes, other members, numbers
// that are not integers, members out of order).
func TestDecodePlainIsUnmarshal(t *testing.T) {
	samples := plainSamples(t)
	for name, b := range samples {
		if !samePlain(t, b) {
			t.Errorf("%s: plain path not taken", name)
		}
	}
	for name, b := range map[string]string{
		"space":             `{"schemaVersion": 2}`,
		"escape":            `{"schemaVersion":2,"mediaType":"a\/b"}`,
		"other member":      `{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:00","size":1,"urls":["x"]}}`,
		"float":             `{"schemaVersion":2.0}`,
		"exponent":          `{"schemaVersion":2e0}`,
		"leading zero":      `{"schemaVersion":02}`,
		"out of order":      `{"mediaType":"a","schemaVersion":2}`,
		"twice":             `{"schemaVersion":2,"schemaVersion":3}`,
		"case":              `{"SchemaVersion":2}`,
		"annotations order": `{"schemaVersion":2,"annotations":{"b":"1","a":"2"}}`,
		"null":              `{"schemaVersion":2,"config":null}`,
		"non-ASCII":         `{"schemaVersion":2,"mediaType":"é"}`,
		"trailing space":    `{"schemaVersion":2} `,
		"19 digits":         `{"schemaVersion":2,"config":{"size":1000000000000000000}}`,
	} {
		if samePlain(t, []byte(b)) {
			t.Errorf("%s: plain path taken for %s", name, b)
		}
	}
	r := rand.New(rand.NewSource(1))
	snips := []string{`,`, `:`, `"`, `{}`, `[]`, `null`, `0`, `-`, `1.5`, ` `, `\`, `"a"`, `"size":1`, `"annotations":{}`, `}`, `]`}
	base := samples["small"]
	taken := 0
	for range 100000 {
		b := append([]byte(nil), base...)
		switch r.Intn(3) {
		case 0:
			b[r.Intn(len(b))] = byte(r.Intn(128))
		case 1:
			p := r.Intn(len(b))
			b = append(b[:p:p], append([]byte(snips[r.Intn(len(snips))]), base[p:]...)...)
		default:
			p := r.Intn(len(b))
			b = append(b[:p:p], base[min(p+1+r.Intn(20), len(base)):]...)
		}
		if samePlain(t, b) {
			taken++
		}
	}
	t.Logf("plain path taken for %d of 100,000 edits", taken)
}

// FuzzDecodePlain: whatever the bytes, the plain path either leaves them
// to json.Unmarshal or decodes them as it does.
func FuzzDecodePlain(f *testing.F) {
	for _, b := range plainSamples(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"schemaVersion":2,"annotations":{"":"","a":"b"}}`))
	f.Fuzz(func(t *testing.T, b []byte) { samePlain(t, b) })
}
