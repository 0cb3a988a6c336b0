package admission

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/signature"
	"stellaops.io/stella/trust"
)

// TestDecide covers every combination of where strictness comes from and
// what the flags ask for.
func TestDecide(t *testing.T) {
	for bits := 0; bits < 16; bits++ {
		s := Settings{Sealed: bits&1 != 0, ConfigRequire: bits&2 != 0, Require: bits&4 != 0, SkipSignature: bits&8 != 0}
		m, err := Decide(s)
		var want Mode
		var wantErr error
		switch {
		case s.SkipSignature && s.Require:
			wantErr = ErrConflictingFlags
		case s.SkipSignature && s.Sealed:
			wantErr = ErrSealedRelaxation
		case s.SkipSignature && s.ConfigRequire:
			wantErr = ErrConfiguredRelaxation
		case s.SkipSignature:
			want = Skip
		case s.Require || s.Sealed || s.ConfigRequire:
			want = Require
		default:
			want = Check
		}
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Errorf("%+v: want %v, got %v, %v", s, wantErr, m, err)
			}
			continue
		}
		if err != nil || m != want {
			t.Errorf("%+v: want mode %d, got %d, %v", s, want, m, err)
		}
	}
}

// memoryPack builds a sample pack into an in-memory store.
func memoryPack(t *testing.T, store *memory.Store) *artifact.Pack {
	t.Helper()
	p, err := pack.LoadDir("../testdata/packs/backup-database")
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, d := range append([]ocispec.Descriptor{a.Manifest}, configAndLayers(t, a)...) {
		rc, err := a.Fetch(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Push(ctx, d, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	return a
}

func configAndLayers(t *testing.T, a *artifact.Pack) []ocispec.Descriptor {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(a.ManifestBytes(), &m); err != nil {
		t.Fatal(err)
	}
	return append([]ocispec.Descriptor{m.Config}, m.Layers...)
}

// pushManifest stores a variant of a's manifest changed by edit.
func pushManifest(t *testing.T, store *memory.Store, a *artifact.Pack, edit func(*ocispec.Manifest)) ocispec.Descriptor {
	t.Helper()
	var m ocispec.Manifest
	if err := json.Unmarshal(a.ManifestBytes(), &m); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	m.Versioned = specs.Versioned{SchemaVersion: 2}
	b, _ := json.Marshal(m)
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)), ArtifactType: m.ArtifactType}
	if err := store.Push(context.Background(), d, strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCheckBindsNamesAndLayout: the name a source gives a pack must be its
// manifest's ref (version optional only when the source claims none), and
// a pack holds only its config and plain file layers — under every mode.
func TestCheckBindsNamesAndLayout(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	a := memoryPack(t, store)
	other := pushManifest(t, store, a, func(m *ocispec.Manifest) {
		m.Layers[0].MediaType = "application/vnd.stellaops.pack.file.v1+zstd"
	})
	cfgType := pushManifest(t, store, a, func(m *ocispec.Manifest) { m.Config.MediaType = artifact.MediaTypeEmptyJSON })
	for _, mode := range []Mode{Check, Require, Skip} {
		p := Policy{Mode: mode, Trust: &trust.Store{}, Tenant: "default"}
		for _, tc := range []struct {
			name  string
			desc  ocispec.Descriptor
			ref   string
			claim Claim
			want  error
		}{
			{"own name", a.Manifest, a.Ref, Claim{}, nil},
			{"renamed in index", a.Manifest, "rotate-registry-credentials:0.4.2", Claim{}, ErrRefMismatch},
			{"other version in index", a.Manifest, "backup-database:9.9.9", Claim{}, ErrRefMismatch},
			{"registry name and tag", a.Manifest, a.Ref, Claim{"backup-database", "0.4.2"}, nil},
			{"registry by digest", a.Manifest, a.Ref, Claim{Name: "backup-database"}, nil},
			{"registry other repository", a.Manifest, a.Ref, Claim{"rotate-registry-credentials", "0.4.2"}, ErrRefMismatch},
			{"registry other tag", a.Manifest, a.Ref, Claim{"backup-database", "latest"}, ErrRefMismatch},
			{"zstd layer", other, a.Ref, Claim{}, ErrPackLayout},
			{"config type", cfgType, a.Ref, Claim{}, ErrPackLayout},
			{"too large", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: a.Manifest.Digest, Size: integrity.MaxManifestSize + 1}, a.Ref, Claim{}, integrity.ErrTooLarge},
		} {
			v, err := p.Check(ctx, store, cache.Artifact{Descriptor: tc.desc, Kind: artifact.KindPack, Ref: tc.ref}, tc.claim)
			if err != nil {
				t.Fatalf("%d %s: %v", mode, tc.name, err)
			}
			switch {
			case tc.want == nil && mode == Require:
				if !errors.Is(v.Err, signature.ErrRejected) {
					t.Errorf("%d %s: an unsigned pack must be refused when required, got %v", mode, tc.name, v.Err)
				}
			case tc.want == nil:
				if v.Err != nil {
					t.Errorf("%d %s: want admitted, got %v", mode, tc.name, v.Err)
				}
			case !errors.Is(v.Err, tc.want):
				t.Errorf("%d %s: want %v, got %v", mode, tc.name, tc.want, v.Err)
			}
		}
	}
}

// TestImportRefusesReferrersOfRefused: a referrer whose subject was refused
// is refused too, through a chain of referrers, and nothing of either is
// stored; referrers are ordered after their subjects.
func TestImportRefusesReferrersOfRefused(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	a := memoryPack(t, store)
	refer := func(subject ocispec.Descriptor, n string) ocispec.Descriptor {
		layer := []byte(`{"n":"` + n + `"}`)
		ld := ocispec.Descriptor{MediaType: artifact.MediaTypeEvidence, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
		if err := store.Push(ctx, ld, strings.NewReader(string(layer))); err != nil {
			t.Fatal(err)
		}
		if ok, _ := store.Exists(ctx, ocispec.DescriptorEmptyJSON); !ok {
			_ = store.Push(ctx, ocispec.DescriptorEmptyJSON, strings.NewReader("{}"))
		}
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifact.ArtifactTypeEvidence,
			Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{ld}, Subject: &subject}
		b, _ := json.Marshal(m)
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)), ArtifactType: artifact.ArtifactTypeEvidence}
		if err := store.Push(ctx, d, strings.NewReader(string(b))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := refer(a.Manifest, "1")
	second := refer(first, "2")
	entries := []cache.Artifact{
		{Descriptor: second, Kind: artifact.KindEvidence},
		{Descriptor: first, Kind: artifact.KindEvidence},
		{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: "backup-database:9.9.9"}, // renamed: refused
	}
	if got := orderBySubject(ctx, store, entries); got[0].Ref == "" || got[1].Descriptor.Digest != first.Digest || got[2].Descriptor.Digest != second.Digest {
		t.Fatalf("referrers must follow their subjects: %+v", got)
	}
	p := Policy{Mode: Skip}
	ad, err := p.Admit(ctx, store, entries, "source checks")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(ad.Err(), ErrRefMismatch) || len(ad.Refused()) != 1 || len(ad.Admitted()) != 2 {
		t.Fatalf("want the pack refused and its referrers admitted for now: %+v", ad)
	}
	if ad.Verified[0] != "source checks" || ad.Verified[len(ad.Verified)-1] != "insecure-skip-signature: signatures not checked" {
		t.Errorf("verified lines: %q", ad.Verified)
	}
	st := cachetest.Open(t)
	rep, err := Import(ctx, st, store, ad, cache.ImportRecord{From: "test"}, cache.ImportOptions{})
	if err == nil {
		t.Fatal("want the referrers' refusal reported")
	}
	for _, r := range rep.Import.Artifacts {
		if r.Status != cache.StatusFailed || !errors.Is(r.Err, ErrSubjectRefused) {
			t.Errorf("%s: want refused as its subject was, got %s %v", r.Artifact.Descriptor.Digest, r.Status, r.Err)
		}
	}
	if len(rep.Import.Artifacts) != 2 || len(rep.Packs) != 0 {
		t.Fatalf("report: %+v", rep)
	}
	list, err := st.List(ctx, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("nothing may be stored: %v %+v", err, list)
	}
}

// TestLoadPackRebuilds: a pack loaded from the cache must rebuild from its
// files to its own digest; a manifest stella would not build (here, one
// extra annotation) is refused although every blob is intact.
func TestLoadPackRebuilds(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	a := memoryPack(t, store)
	odd := pushManifest(t, store, a, func(m *ocispec.Manifest) { m.Annotations["io.example.extra"] = "x" })
	p := Policy{Mode: Check, Trust: &trust.Store{}, Tenant: "default"}
	for _, tc := range []struct {
		desc ocispec.Descriptor
		want error
	}{{a.Manifest, nil}, {odd, integrity.ErrDigestMismatch}} {
		st := cachetest.Open(t)
		if _, err := st.Import(ctx, store, []cache.Artifact{{Descriptor: tc.desc, Kind: artifact.KindPack, Ref: a.Ref}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		lp, err := p.LoadPack(ctx, st, a.Ref)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: want %v, got %v", tc.desc.Digest, tc.want, err)
		}
		if tc.want == nil && (lp.Artifact.Digest() != a.Digest() || lp.Pack.Manifest.Metadata.Name != "backup-database") {
			t.Fatalf("loaded the wrong pack: %+v", lp)
		}
	}
	st := cachetest.Open(t)
	if _, err := p.LoadPack(ctx, st, "backup-database:0.4.2"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("want not found, got %v", err)
	}
}

// TestCheckRef: only a pack carries <name>:<version>; other kinds are named
// in their own namespace, with an id that is not a version.
func TestCheckRef(t *testing.T) {
	for _, tc := range []struct {
		kind, ref string
		ok        bool
	}{
		{artifact.KindPack, "backup-database:0.4.2", true},
		{artifact.KindEvidence, "", true},
		{artifact.KindSignature, "", true},
		{artifact.KindApprovalRequest, "approval-request:0123456789abcdef", true},
		{artifact.KindEvidence, "evidence:run-1", true},
		{artifact.KindEvidence, "backup-database:0.4.2", false},
		{artifact.KindApprovalRequest, "backup-database:0.4.2", false},
		{artifact.KindApprovalResponse, "approval-request:0123456789abcdef", false},
		{artifact.KindSignature, "backup-database:0.4.2", false},
		{artifact.KindEvidence, "evidence:1.0.0", false}, // a pack named evidence would need it
		{artifact.KindEvidence, "registry.local/packs/backup-database:0.4.2", false},
	} {
		err := CheckRef(tc.kind, tc.ref)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrRefNamespace)) {
			t.Errorf("%s %q: want ok %v, got %v", tc.kind, tc.ref, tc.ok, err)
		}
	}
}

// TestCheckRefusesSquatters: an artifact of another kind listed under a
// pack's name is refused by the policy under every mode.
func TestCheckRefusesSquatters(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	a := memoryPack(t, store)
	for _, mode := range []Mode{Check, Require, Skip} {
		p := Policy{Mode: mode, Trust: &trust.Store{}, Tenant: "default"}
		for _, kind := range []string{artifact.KindEvidence, artifact.KindApprovalRequest, artifact.KindApprovalResponse, artifact.KindSignature} {
			v, err := p.Check(ctx, store, cache.Artifact{Descriptor: a.Manifest, Kind: kind, Ref: a.Ref}, Claim{})
			if err != nil || !errors.Is(v.Err, ErrRefNamespace) {
				t.Errorf("mode %d, %s under %s: want ErrRefNamespace, got %v %v", mode, kind, a.Ref, v.Err, err)
			}
		}
	}
}

// TestCheckRefusesUnsafeTitles: a pack whose file titles pack build could
// not write is refused under every mode, signed or not.
func TestCheckRefusesUnsafeTitles(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	a := memoryPack(t, store)
	for _, title := range []string{"../escape.sh", "/etc/passwd", `scripts\dump.sh`, "pack.yaml", ".git/config", "scripts/.x", "scripts"} {
		d := pushManifest(t, store, a, func(m *ocispec.Manifest) {
			for i, l := range m.Layers {
				if l.Annotations[artifact.AnnotationTitle] == "scripts/dump.sh" {
					m.Layers[i].Annotations = map[string]string{artifact.AnnotationTitle: title}
				}
			}
		})
		for _, mode := range []Mode{Check, Require, Skip} {
			p := Policy{Mode: mode, Trust: &trust.Store{}, Tenant: "default"}
			v, err := p.Check(ctx, store, cache.Artifact{Descriptor: d, Kind: artifact.KindPack, Ref: a.Ref}, Claim{})
			if err != nil || !errors.Is(v.Err, artifact.ErrUnsafeTitle) {
				t.Errorf("mode %d, title %q: want artifact.ErrUnsafeTitle, got %v %v", mode, title, v.Err, err)
			}
		}
	}
}

// TestVisible: a pack is visible to the tenants it lists, to all with "*"
// or no list, and to no other.
func TestVisible(t *testing.T) {
	p, err := pack.LoadDir("../testdata/packs/remediate-cve") // acme, globex
	if err != nil {
		t.Fatal(err)
	}
	for tenant, ok := range map[string]bool{"acme": true, "globex": true, "default": false, "initech": false, "": false} {
		err := Visible(p, tenant)
		if ok != (err == nil) || (!ok && (!errors.Is(err, ErrNotVisible) || !strings.Contains(err.Error(), "remediate-cve:1.0.0"))) {
			t.Errorf("tenant %q: want visible %v, got %v", tenant, ok, err)
		}
	}
	p.Manifest.Metadata.TenantVisibility = []string{"*"}
	if err := Visible(p, "initech"); err != nil {
		t.Errorf("\"*\": %v", err)
	}
	p.Manifest.Metadata.TenantVisibility = nil
	if err := Visible(p, "initech"); err != nil {
		t.Errorf("no list: %v", err)
	}
}

// TestBindSignatures: each admitted pack's valid signatures follow its
// first entry, bound to it; invalid signatures, other referrers and the
// signatures of a refused pack stay unbound.
func TestBindSignatures(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	art := func(kind, name, ref string) cache.Artifact {
		return cache.Artifact{Descriptor: ocispec.Descriptor{Digest: d(name)}, Kind: kind, Ref: ref}
	}
	pk, renamed := art(artifact.KindPack, "p", "p:1.0.0"), art(artifact.KindPack, "p", "p:9.9.9")
	other := art(artifact.KindPack, "q", "q:1.0.0")
	good, bad, ev := art(artifact.KindSignature, "good", ""), art(artifact.KindSignature, "bad", ""), art(artifact.KindEvidence, "ev", "")
	qsig := art(artifact.KindSignature, "qsig", "")
	ad := Admission{Verdicts: []Verdict{
		{Artifact: renamed, Err: ErrRefMismatch},
		{Artifact: pk, Signatures: []signature.Result{{Digest: d("good"), Valid: true}, {Digest: d("bad")}}},
		{Artifact: other, Err: signature.ErrRejected, Signatures: []signature.Result{{Digest: d("qsig"), Valid: true}}},
		{Artifact: good}, {Artifact: bad}, {Artifact: ev}, {Artifact: qsig},
	}}
	got := bindSignatures([]cache.Artifact{pk, bad, ev, good, qsig}, ad)
	type row struct {
		Digest digest.Digest
		Bound  bool
	}
	var rows []row
	for _, a := range got {
		rows = append(rows, row{a.Descriptor.Digest, a.WithPrevious})
	}
	want := []row{{d("p"), false}, {d("good"), true}, {d("bad"), false}, {d("ev"), false}, {d("qsig"), false}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("bound order (-want +got):\n%s", diff)
	}
	if refused := ad.refusedSet(); refused[d("p")] || !refused[d("q")] {
		t.Errorf("a digest admitted under one entry is not refused by another: %v", refused)
	}
}

// TestLoadPackVisibility: a pack is loaded for use only for a tenant its
// tenantVisibility lists.
func TestLoadPackVisibility(t *testing.T) {
	ctx := context.Background()
	p, err := pack.LoadDir("../testdata/packs/remediate-cve") // acme, globex
	if err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Build(p, artifact.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := cachetest.Open(t)
	if _, err := st.Import(ctx, a, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}}, cache.ImportRecord{From: "test"}, cache.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for tenant, want := range map[string]error{"acme": nil, "globex": nil, "initech": ErrNotVisible, "default": ErrNotVisible} {
		lp, err := Policy{Mode: Check, Trust: &trust.Store{}, Tenant: tenant}.LoadPack(ctx, st, a.Ref)
		if !errors.Is(err, want) || (want == nil && lp.Ref != a.Ref) {
			t.Errorf("tenant %s: want %v, got %v", tenant, want, err)
		}
		if want != nil && (!strings.Contains(err.Error(), tenant) || !strings.Contains(err.Error(), a.Ref)) {
			t.Errorf("tenant %s: the refusal must name pack and tenant: %v", tenant, err)
		}
	}
}
