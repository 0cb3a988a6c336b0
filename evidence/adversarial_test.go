package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
)

// counting serves blobs and records the digest of each one fetched.
type counting struct {
	content.Fetcher
	fetched []digest.Digest
}

func (c *counting) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	c.fetched = append(c.fetched, d.Digest)
	return c.Fetcher.Fetch(ctx, d)
}

// TestVerifyReadsNothingUnsigned: an attacker who can rewrite the manifest
// (the media, a registry) but holds no key adds thousands of layers that
// all name one large blob under new titles; the verifier must refuse
// before reading any part the signed statement does not name, else one
// 256 MiB blob stored once is read into memory once per title.
func TestVerifyReadsNothingUnsigned(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ev := build(t, f.in)
	desc, src, err := ev.manifest()
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(src[desc.Digest], &m); err != nil {
		t.Fatal(err)
	}
	big := m.Layers[len(m.Layers)-1]
	n := len(m.Layers)
	layers := append([]ocispec.Descriptor(nil), m.Layers[:n-1]...)
	for i := range 100 {
		l := big
		l.MediaType = artifact.MediaTypeEvidenceOutput
		l.Annotations = map[string]string{artifact.AnnotationTitle: fmt.Sprintf("outputs/copy%03d", i)}
		layers = append(layers, l)
	}
	m.Layers = append(layers, m.Layers[n-1])
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	forged := src.Add(ocispec.MediaTypeImageManifest, mb)
	c := &counting{Fetcher: src}
	_, err = VerifyArtifact(ctx, c, forged, "forged", "", VerifyOptions{Trust: f.trust})
	var pe *PartError
	if !errors.Is(err, ErrPartAltered) || !errors.As(err, &pe) || pe.Part != "outputs/copy000" {
		t.Fatalf("got %v, want ErrPartAltered naming outputs/copy000", err)
	}
	if len(c.fetched) > 2 {
		t.Errorf("%d blobs read before the statement was checked, want only the manifest and the statement", len(c.fetched))
	}
}

// resign rewrites run.json with change and signs the evidence again with
// the fixture's runner key: what a trusted runner (buggy, or its key
// misused) could produce, which the verifier must still hold to the
// layout.
func resign(t testing.TB, f *fixture, ev *Evidence, change func(doc *RunDoc)) {
	t.Helper()
	p := part(t, ev, PartRun)
	var doc RunDoc
	if err := json.Unmarshal(p.Data, &doc); err != nil {
		t.Fatal(err)
	}
	change(&doc)
	var err error
	if p.Data, err = canonical.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	sub, err := keys.NewSubject(SubjectPack, ev.Pack.Digest)
	if err != nil {
		t.Fatal(err)
	}
	subjects := []keys.Subject{sub}
	for _, p := range ev.Parts[:len(ev.Parts)-1] {
		sub, err := keys.NewSubject(p.Title, digest.FromBytes(p.Data))
		if err != nil {
			t.Fatal(err)
		}
		subjects = append(subjects, sub)
	}
	st, err := keys.NewStatement(PredicateType, ev.Predicate, subjects...)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Parts[len(ev.Parts)-1].Data, err = f.runner.SignStatement(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyPartTitles: every part's title is a clean relative path (what
// Build writes), an output's the path run.json gives the file; tools that
// unpack the layers by title (oras pull, tar) would otherwise write outside
// their folder.
func TestVerifyPartTitles(t *testing.T) {
	for _, title := range []string{"outputs/../../etc/cron.d/x", "outputs//etc/passwd", "outputs/", "outputs/a/./b"} {
		t.Run(title, func(t *testing.T) {
			f := newFixture(t)
			ev := build(t, f.in)
			part(t, ev, "outputs/out/report.txt").Title = title
			resign(t, f, ev, func(doc *RunDoc) { doc.Files[0].Part = title })
			checkRefused(t, write(t, ev), f.trust, ErrInvalid, PartManifest)
		})
	}
	for _, title := range []string{"approvals/../../etc/x.dsse.json", "approvals//x.dsse.json"} {
		t.Run(title, func(t *testing.T) {
			f := newFixture(t)
			ev := build(t, f.in)
			part(t, ev, "approvals/001.dsse.json").Title = title
			resign(t, f, ev, func(*RunDoc) {})
			checkRefused(t, write(t, ev), f.trust, ErrInvalid, PartManifest)
		})
	}
	t.Run("part-not-of-path", func(t *testing.T) {
		f := newFixture(t)
		ev := build(t, f.in)
		part(t, ev, "outputs/out/report.txt").Title = "outputs/elsewhere.txt"
		resign(t, f, ev, func(doc *RunDoc) { doc.Files[0].Part = "outputs/elsewhere.txt" })
		checkRefused(t, write(t, ev), f.trust, ErrInconsistent, PartRun)
	})
}

// TestVerifyGatePassedWithoutApproval: a gate step that succeeded passed
// its gate, whatever its gate record says; without the approvals it needs
// the evidence is refused.
func TestVerifyGatePassedWithoutApproval(t *testing.T) {
	for name, change := range map[string]func(s *Step){
		"no gate record":   func(s *Step) { s.Gate = nil },
		"gate not decided": func(s *Step) { s.Gate.State = run.GateWaiting },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.in.Approvals = nil
			ev := build(t, f.in)
			resign(t, f, ev, func(doc *RunDoc) {
				for i := range doc.Steps {
					if doc.Steps[i].ID == "approve" {
						change(&doc.Steps[i])
					}
				}
			})
			checkRefused(t, write(t, ev), f.trust, ErrApprovalMismatch, PartRun)
		})
	}
}

// TestVerifyManifestOneReading: the manifest is the only unsigned JSON the
// verifier trusts for which blob is which part, so it must read one way
// only. encoding/json takes the last of duplicate names and matches names
// case-insensitively; a parser that takes the first, or matches exactly
// (jq, JavaScript, Python), would read other layers from the same
// manifest digest the verifier reported verified.
func TestVerifyManifestOneReading(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ev := build(t, f.in)
	desc, src, err := ev.manifest()
	if err != nil {
		t.Fatal(err)
	}
	mb := src[desc.Digest]
	other := src.Add(artifact.MediaTypeEvidenceOutput, []byte("not what the runner signed\n"))
	evil := fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"annotations":{%q:"outputs/out/report.txt"}}`,
		other.MediaType, other.Digest, other.Size, artifact.AnnotationTitle)
	for name, forge := range map[string]func([]byte) []byte{
		"duplicate layers": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"layers":[`), []byte(`"layers":[`+evil+`],"layers":[`), 1)
		},
		"layers in another case": func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"layers":[`), []byte(`"layers":[`+evil+`],"Layers":[`), 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			forged := src.Add(ocispec.MediaTypeImageManifest, forge(mb))
			_, err := VerifyArtifact(ctx, src, forged, "forged", "", VerifyOptions{Trust: f.trust})
			var pe *PartError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &pe) || pe.Part != PartManifest {
				t.Fatalf("got %v, want ErrInvalid naming the manifest", err)
			}
		})
	}
}

// TestInspectStatementBound: listing a registry's evidence reads each
// referrer's statement; one pushed by anyone is read only up to the size
// an envelope may have, not the 256 MiB an output part may.
func TestInspectStatementBound(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	desc, src, err := build(t, f.in).manifest()
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(src[desc.Digest], &m); err != nil {
		t.Fatal(err)
	}
	huge := src.Add(artifact.MediaTypeDSSE, bytes.Repeat([]byte(" "), keys.MaxEnvelopeSize+1))
	huge.Annotations = map[string]string{artifact.AnnotationTitle: PartStatement}
	m.Layers[len(m.Layers)-1] = huge
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c := &counting{Fetcher: src}
	_, err = Inspect(ctx, c, src.Add(ocispec.MediaTypeImageManifest, mb))
	var pe *PartError
	if !errors.Is(err, integrity.ErrTooLarge) || !errors.As(err, &pe) || pe.Part != PartStatement {
		t.Fatalf("got %v, want integrity.ErrTooLarge naming the statement", err)
	}
	if len(c.fetched) != 1 {
		t.Errorf("%d blobs fetched, want only the manifest", len(c.fetched))
	}
}

// TestVerifyExpansionShadowsGate: the plan's gates are bound by the plan
// hash the approvers signed; run.json's expansions are the runner's word
// alone and add gates, never replace one of the plan's (here with no
// approver needed) to pass it without its approvals.
func TestVerifyExpansionShadowsGate(t *testing.T) {
	f := newFixture(t)
	f.in.Approvals = nil
	ev := build(t, f.in)
	resign(t, f, ev, func(doc *RunDoc) {
		g := f.plan.Approvals[0]
		g.MinApprovers = 0
		doc.Expansions["approve"] = plan.Expansion{Steps: []plan.Step{}, Approvals: []plan.Approval{g}}
	})
	checkRefused(t, write(t, ev), f.trust, ErrInconsistent, PartRun)
}
