package integrity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	cfgPack  = `{"mediaType":"application/vnd.stellaops.pack.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`
	cfgEmpty = `{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`
	layer    = `{"mediaType":"application/vnd.stellaops.pack.file.v1","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":3}`
)

func describe(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name      string
		mediaType string
		doc       string
		want      error
		typ       string // Type() when accepted
	}{
		{"artifactType", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"artifactType":"application/vnd.stellaops.pack.v1+json","config":` + cfgEmpty + `,"layers":[` + layer + `]}`, nil, "application/vnd.stellaops.pack.v1+json"},
		{"artifactType over config", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"artifactType":"application/x","config":` + cfgPack + `}`, nil, "application/x"},
		{"OCI 1.0: config media type", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":` + cfgPack + `}`, nil, "application/vnd.stellaops.pack.config.v1+json"},
		{"empty config says nothing", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":` + cfgEmpty + `}`, nil, ""},
		{"docker manifest", MediaTypeDockerManifest, `{"schemaVersion":2,"config":` + cfgPack + `}`, nil, "application/vnd.stellaops.pack.config.v1+json"},
		{"index", ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"manifests":[` + layer + `]}`, nil, ""},
		{"index artifactType", ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"artifactType":"application/x","manifests":[]}`, nil, "application/x"},
		{"not json", ocispec.MediaTypeImageManifest, `not json`, ErrInvalidManifest, ""},
		{"schemaVersion 1", ocispec.MediaTypeImageManifest, `{"schemaVersion":1,"config":` + cfgPack + `}`, ErrInvalidManifest, ""},
		{"media type disagrees", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":` + cfgPack + `}`, ErrInvalidManifest, ""},
		{"no config", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"layers":[` + layer + `]}`, ErrInvalidManifest, ""},
		{"bad layer digest", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":` + cfgPack + `,"layers":[{"mediaType":"x","digest":"sha256:zz","size":1}]}`, ErrInvalidManifest, ""},
		{"negative size", ocispec.MediaTypeImageIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","size":-1}]}`, ErrInvalidManifest, ""},
		{"bad subject", ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":` + cfgPack + `,"subject":{"mediaType":"x","digest":"md5:00","size":1}}`, ErrInvalidManifest, ""},
		{"not a manifest type", "text/plain", `{"schemaVersion":2}`, ErrUnsupportedMediaType, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.doc)
			m, err := ParseManifest(describe(tt.mediaType, b), b)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Type(); got != tt.typ {
				t.Errorf("Type() = %q, want %q", got, tt.typ)
			}
		})
	}
}

func TestParseManifestChecksBytesFirst(t *testing.T) {
	b := []byte(`{"schemaVersion":2,"config":` + cfgPack + `}`)
	d := describe(ocispec.MediaTypeImageManifest, b)
	if _, err := ParseManifest(d, bytes.ToUpper(b)); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("altered: %v, want ErrDigestMismatch", err)
	}
	if _, err := ParseManifest(d, b[:len(b)-1]); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("short: %v, want ErrSizeMismatch", err)
	}
	big := []byte(`{"schemaVersion":2,"config":` + cfgPack + `,"annotations":{"x":"` + strings.Repeat("x", MaxManifestSize) + `"}}`)
	if _, err := ParseManifest(describe(ocispec.MediaTypeImageManifest, big), big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxManifestSize: %v, want ErrTooLarge", err)
	}
	if _, err := ParseManifest(ocispec.Descriptor{MediaType: d.MediaType, Digest: "sha256:nope", Size: d.Size}, b); !errors.Is(err, ErrInvalidDigest) {
		t.Errorf("malformed digest: %v, want ErrInvalidDigest", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"artifactType":"application/x","config":`+cfgEmpty+`,"layers":[`+layer+`]}`))
	f.Add(ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[`+layer+`]}`))
	f.Add(ocispec.MediaTypeImageManifest, []byte(`{"config":{"digest":"sha256:zz","size":-1}}`))
	f.Fuzz(func(t *testing.T, mediaType string, b []byte) {
		m, err := ParseManifest(describe(mediaType, b), b)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) && !errors.Is(err, ErrUnsupportedMediaType) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("refusal without a sentinel: %v", err)
			}
			return
		}
		if !IsManifestType(mediaType) {
			t.Fatalf("accepted media type %q", mediaType)
		}
		for _, c := range append(append(m.Layers, m.Manifests...), ptrs(m.Config, m.Subject)...) {
			if c.Digest.Validate() != nil || c.Size < 0 {
				t.Fatalf("accepted child %+v", c)
			}
		}
	})
}

func ptrs(ds ...*ocispec.Descriptor) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, d := range ds {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out
}

// TestManifestOfIsDecodeManifest: ManifestOf of a manifest struct gives
// what DecodeManifest gives for its json.Marshal bytes, as the cache
// records it (json), or the same refusal; an index is not its to take.
func TestManifestOfIsDecodeManifest(t *testing.T) {
	var samples []ocispec.Manifest
	for _, b := range plainSamples(t) {
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.MediaType != ocispec.MediaTypeImageIndex {
			samples = append(samples, m)
		}
	}
	good := describe("x", []byte("x"))
	edits := map[string]func(m *ocispec.Manifest){
		"as is":                func(*ocispec.Manifest) {},
		"nil layers":           func(m *ocispec.Manifest) { m.Layers = nil },
		"empty annotations":    func(m *ocispec.Manifest) { m.Annotations = map[string]string{} },
		"no media type":        func(m *ocispec.Manifest) { m.MediaType = "" },
		"index media type":     func(m *ocispec.Manifest) { m.MediaType = ocispec.MediaTypeImageIndex },
		"schemaVersion 1":      func(m *ocispec.Manifest) { m.SchemaVersion = 1 },
		"no config digest":     func(m *ocispec.Manifest) { m.Config.Digest = "" },
		"bad config digest":    func(m *ocispec.Manifest) { m.Config.Digest = "sha256:zz" },
		"negative config size": func(m *ocispec.Manifest) { m.Config.Size = -1 },
		"bad layer digest": func(m *ocispec.Manifest) {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: "x", Digest: "md5:00", Size: 1})
		},
		"negative layer size": func(m *ocispec.Manifest) {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: "x", Digest: good.Digest, Size: -1})
		},
		"subject": func(m *ocispec.Manifest) { m.Subject = &good },
		"bad subject": func(m *ocispec.Manifest) {
			m.Subject = &ocispec.Descriptor{MediaType: "x", Digest: "sha256:0", Size: 1}
		},
		"layer urls and data": func(m *ocispec.Manifest) {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: "x", Digest: good.Digest, Size: 1, URLs: []string{"u"}, Data: []byte("x")})
		},
		"layer empty annotated": func(m *ocispec.Manifest) {
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: "x", Digest: good.Digest, Size: 1, Annotations: map[string]string{}})
		},
		"empty config type": func(m *ocispec.Manifest) { m.ArtifactType = ""; m.Config.MediaType = ocispec.MediaTypeEmptyJSON },
	}
	for _, mt := range []string{ocispec.MediaTypeImageManifest, MediaTypeDockerManifest, ocispec.MediaTypeImageIndex} {
		for i, base := range samples {
			for name, edit := range edits {
				t.Run(fmt.Sprintf("%s/%d/%s", mt, i, name), func(t *testing.T) {
					m := base
					m.Layers = slices.Clone(base.Layers)
					edit(&m)
					b, err := json.Marshal(m)
					if err != nil {
						t.Fatal(err)
					}
					got, gotErr := ManifestOf(mt, &m)
					if mt == ocispec.MediaTypeImageIndex {
						if !errors.Is(gotErr, ErrUnsupportedMediaType) {
							t.Fatalf("ManifestOf(index) = %v, want ErrUnsupportedMediaType", gotErr)
						}
						return
					}
					want, wantErr := DecodeManifest(mt, b)
					if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
						t.Fatalf("ManifestOf: %v; DecodeManifest: %v", gotErr, wantErr)
					}
					if wantErr != nil {
						return
					}
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(want)
					if !bytes.Equal(gj, wj) || got.Type() != want.Type() || got.IsIndex() {
						t.Fatalf("ManifestOf gave %.300s (type %q), DecodeManifest %.300s (type %q)", gj, got.Type(), wj, want.Type())
					}
				})
			}
		}
	}
}
