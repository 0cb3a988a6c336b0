package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.etcd.io/bbolt"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
)

// imported returns a fresh cache (not checked on the way out) holding one
// pack with a signature, and the pack's digests.
func imported(t *testing.T) (s *cache.Store, pack, layer, sig ocispec.Descriptor) {
	t.Helper()
	ctx := context.Background()
	s, err := cache.Open(ctx, t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource()
	layer = src.blob(t, []byte("the only layer of the pack"))
	pack = src.manifest(t, typePack, nil, layer)
	sig = src.signature(t, pack, "signature")
	if _, err := s.Import(ctx, src, []cache.Artifact{packArtifact(pack, "demo:1"), sigArtifact(sig)}, cache.ImportRecord{}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return s, pack, layer, sig
}

type finding struct {
	Object, Problem string
	Severity        cache.Severity
}

func findings(r cache.Report) []finding {
	var out []finding
	for _, p := range r.Problems {
		out = append(out, finding{p.Object, p.Problem, p.Severity})
	}
	return out
}

func TestVerifyDetects(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		break_ func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding
	}{
		{"clean", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			return nil
		}},
		{"flipped byte", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			flipByte(t, blobPath(s, layer.Digest), 3)
			return []finding{{string(layer.Digest), cache.ProblemBlobDigest, cache.SeverityError}}
		}},
		{"flipped byte in a manifest", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			flipByte(t, blobPath(s, pack.Digest), 0)
			return []finding{{string(pack.Digest), cache.ProblemBlobDigest, cache.SeverityError}}
		}},
		{"deleted blob", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			if err := os.Remove(blobPath(s, layer.Digest)); err != nil {
				t.Fatal(err)
			}
			return []finding{{string(layer.Digest), cache.ProblemBlobMissing, cache.SeverityError}}
		}},
		{"truncated blob", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			if err := os.Truncate(blobPath(s, layer.Digest), 4); err != nil {
				t.Fatal(err)
			}
			return []finding{
				{string(layer.Digest), cache.ProblemBlobDigest, cache.SeverityError},
				{string(layer.Digest), cache.ProblemBlobSize, cache.SeverityError},
			}
		}},
		{"refcount", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			editBlobRecord(t, s, layer.Digest, func(r map[string]any) { r["refs"] = r["refs"].(float64) + 1 })
			return []finding{{string(layer.Digest), cache.ProblemRefcount, cache.SeverityError}}
		}},
		{"leftover and stray file", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			leftover := filepath.Join(s.Root(), "ingest", ".stella-tmp-abc-123")
			stray := filepath.Join(s.Root(), "blobs", "sha256", "not-a-digest")
			for _, p := range []string{leftover, stray} {
				if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return []finding{{"blobs/sha256/not-a-digest", cache.ProblemStrayFile, cache.SeverityWarning},
				{"ingest/.stella-tmp-abc-123", cache.ProblemLeftover, cache.SeverityWarning}}
		}},
		{"dangling ref", func(t *testing.T, s *cache.Store, pack, layer, sig ocispec.Descriptor) []finding {
			err := cache.Update(ctx, s, func(tx *bbolt.Tx) error {
				return tx.Bucket([]byte("cache.refs")).Put([]byte("ghost:1"), []byte(`{"digest":"`+string(layer.Digest)+`"}`))
			})
			if err != nil {
				t.Fatal(err)
			}
			return []finding{{"ghost:1", cache.ProblemRefDangling, cache.SeverityError}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, pack, layer, sig := imported(t)
			want := tt.break_(t, s, pack, layer, sig)
			r, err := s.Verify(ctx, cache.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, findings(r)); diff != "" {
				t.Errorf("problems (-want +got):\n%s\nreport: %+v", diff, r.Problems)
			}
			if wantOK := !hasError(want); r.OK() != wantOK {
				t.Errorf("OK = %v, want %v", r.OK(), wantOK)
			}
			if r.Artifacts != 2 || r.Refs < 1 || r.Blobs < 4 {
				t.Errorf("counts = %+v", r)
			}
		})
	}
}

func hasError(fs []finding) bool {
	for _, f := range fs {
		if f.Severity == cache.SeverityError {
			return true
		}
	}
	return false
}

func TestVerifyRefcountDetail(t *testing.T) {
	ctx := context.Background()
	s, _, layer, _ := imported(t)
	editBlobRecord(t, s, layer.Digest, func(r map[string]any) { r["refs"] = 7.0 })
	r, err := s.Verify(ctx, cache.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []cache.Problem{{Severity: cache.SeverityError, Source: "cache", Object: string(layer.Digest),
		Problem: cache.ProblemRefcount, Expected: "1", Actual: "7"}}
	if diff := cmp.Diff(want, r.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func editBlobRecord(t *testing.T, s *cache.Store, d digest.Digest, edit func(map[string]any)) {
	t.Helper()
	err := cache.Update(context.Background(), s, func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("cache.blobs"))
		var r map[string]any
		if err := json.Unmarshal(b.Get([]byte(d)), &r); err != nil {
			return err
		}
		edit(r)
		raw, _ := json.Marshal(r)
		return b.Put([]byte(d), raw)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyHooks(t *testing.T) {
	ctx := context.Background()
	hook := cache.VerifyHook{Name: "runs", Check: func(ctx context.Context, s *cache.Store) ([]cache.Problem, error) {
		var ps []cache.Problem
		err := s.Records("run").View(ctx, func(tx cache.RecordTx) error {
			return tx.ForEach("evidence", nil, func(k, v []byte) error {
				ok, err := s.Exists(ctx, ocispec.Descriptor{Digest: digest.Digest(v), Size: 2})
				if err != nil || !ok {
					ps = append(ps, cache.Problem{Object: string(k), Problem: "evidence-missing", Expected: string(v)})
				}
				return nil
			})
		})
		return ps, err
	}}
	s := cachetest.Open(t) // the hook is not passed here: the broken record must stay local to this test
	err := s.Records("run").Update(ctx, func(tx cache.RecordTx) error {
		return tx.Put("evidence", []byte("run:t:1"), []byte(digest.FromString("{}")))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Verify(ctx, cache.VerifyOptions{Hooks: []cache.VerifyHook{hook}})
	if err != nil {
		t.Fatal(err)
	}
	want := []cache.Problem{{Severity: cache.SeverityError, Source: "runs", Object: "run:t:1", Problem: "evidence-missing",
		Expected: string(digest.FromString("{}"))}}
	if diff := cmp.Diff(want, r.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}

	errBroken := errors.New("cannot check")
	failing := cache.VerifyHook{Name: "broken", Check: func(context.Context, *cache.Store) ([]cache.Problem, error) {
		return nil, errBroken
	}}
	if _, err := s.Verify(ctx, cache.VerifyOptions{Hooks: []cache.VerifyHook{failing}}); !errors.Is(err, errBroken) {
		t.Errorf("verify with failing hook = %v, want errBroken", err)
	}
	_ = s.Records("run").Update(ctx, func(tx cache.RecordTx) error { return tx.Delete("evidence", []byte("run:t:1")) })
}
