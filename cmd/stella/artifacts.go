package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/signature"
)

// artifactCommands are the pack commands that move artifacts between pack
// folders, bundle files and the cache.
func (s *session) artifactCommands() []*cli.Command {
	signFlags := []cli.Flag{
		&cli.StringFlag{Name: "key", Usage: "signing key: a key file (passphrase from STELLA_KEY_PASSPHRASE_FILE or a prompt) or vault:NAME"},
	}
	policyFlags := []cli.Flag{
		&cli.BoolFlag{Name: "require-signature", Usage: "refuse packs without a valid signature by a trusted publisher key (always on in sealed mode or with config requireSignature)"},
		&cli.BoolFlag{Name: "insecure-skip-signature", Usage: "do not check signatures (not allowed in sealed mode, with config requireSignature, or with --require-signature); printed and recorded in the import record"},
	}
	return []*cli.Command{
		{
			Name:      "build",
			Usage:     "build a pack folder into the cache (and a bundle file with -o)",
			ArgsUsage: "DIR",
			Description: `Validates the pack, derives its OCI artifact deterministically (the same folder
gives the same digest on every machine) and imports it into the cache.

Examples:
   stella pack build ./rotate-registry-credentials
   stella pack build -o rotate.stella.tar ./rotate-registry-credentials
   stella pack build --sign --key publisher.key ./rotate-registry-credentials`,
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "also write a bundle file"},
				&cli.StringFlag{Name: "split", Usage: "with -o: split the bundle into volumes of this size (e.g. 4GiB)"},
				&cli.BoolFlag{Name: "sign", Usage: "sign the built pack with --key"},
			}, signFlags...),
			Action: action(s.packBuild),
		},
		{
			Name:  "import",
			Usage: "import a bundle file (or the first part of a split set) into the cache",
			Description: `Every blob is hashed while it streams and checked against its digest and size;
signatures are checked against the trust store. Each artifact is imported all or
nothing; nothing unverified ever becomes visible in the cache.

Examples:
   stella pack import /media/usb0/packs.stella.tar
   stella pack import --bundle /media/usb0/packs.stella.tar.001 --require-signature`,
			ArgsUsage: "[FILE]",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "bundle", Usage: "bundle file, NAME.001 or NAME.parts.json of a split set (or give it as the argument)"},
			}, policyFlags...),
			Action: action(s.packImport),
		},
		{
			Name:  "verify",
			Usage: "check a bundle file without importing it",
			Description: `Checks the tar structure, SHA256SUMS, every blob's digest and size, the parts of a
split set, and the signatures of every pack against the trust store. It fails (exit 3) when
a pack's signatures do not meet the policy: none valid when signatures are required
(--require-signature, sealed mode, the configuration), and otherwise when a pack carries
signatures, none valid, and one is refuted (altered, by a revoked key, by a key without the
publisher role or tenant); a signature by a key this host does not know is only reported.

Examples:
   stella pack verify /media/usb0/packs.stella.tar
   stella pack verify --bundle /media/usb0/packs.stella.tar.parts.json --require-signature`,
			ArgsUsage: "[FILE]",
			Flags: append([]cli.Flag{
				&cli.StringFlag{Name: "bundle", Usage: "bundle file (or give it as the argument)"},
			}, policyFlags...),
			Action: action(s.packVerify),
		},
		{
			Name:      "export",
			Usage:     "write packs from the cache to a bundle file, with their signatures",
			ArgsUsage: "ID:VERSION...",
			Description: `Examples:
   stella pack export -o packs.stella.tar rotate-registry-credentials:1.3.0
   stella pack export -o /media/usb0/packs.stella.tar --split 4GiB backup-database:0.4.2 sync-vuln-db:2.0.1`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "bundle file to write (required)"},
				&cli.StringFlag{Name: "split", Usage: "split into volumes of this size: NAME.001, NAME.002, ... and NAME.parts.json"},
			},
			Action: action(s.packExport),
		},
		{
			Name:  "list",
			Usage: "list the artifacts in the cache",
			Description: `Examples:
   stella pack list
   stella pack list --kind signature`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "kind", Usage: "only this kind (pack, signature, approval-request, approval-response, evidence)"},
			},
			Action: action(s.packList),
		},
		{
			Name:      "show",
			Usage:     "show a pack in the cache: files, digests, signatures, where it came from",
			ArgsUsage: "ID:VERSION",
			Description: `Examples:
   stella pack show rotate-registry-credentials:1.3.0`,
			Action: action(s.packShow),
		},
		{
			Name:      "rm",
			Usage:     "remove artifacts from the cache (their blobs go with `stella cache gc`)",
			ArgsUsage: "ID:VERSION...",
			Action:    action(s.packRemove),
		},
		{
			Name:      "sign",
			Usage:     "sign a pack in the cache; the signature is stored as a referrer",
			ArgsUsage: "ID:VERSION",
			Description: `Examples:
   stella pack sign --key publisher.key rotate-registry-credentials:1.3.0
   stella pack sign --key vault:publisher rotate-registry-credentials:1.3.0`,
			Flags:  signFlags,
			Action: action(s.packSign),
		},
	}
}

// artifactSummary is the JSON shape of one artifact in command results.
type artifactSummary struct {
	Ref          string        `json:"ref,omitempty"`
	Kind         string        `json:"kind"`
	Digest       digest.Digest `json:"digest"`
	ArtifactType string        `json:"artifactType"`
	Subject      digest.Digest `json:"subject,omitempty"`
	Status       string        `json:"status,omitempty"` // import: new, linked, present, refused
	Reason       string        `json:"reason,omitempty"`
}

func (s *session) packBuild(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one pack folder DIR"); err != nil {
		return err
	}
	if c.Bool("sign") && c.String("key") == "" {
		return usageError("pack build --sign: --key is required")
	}
	if !c.Bool("sign") && c.String("key") != "" {
		return usageError("pack build --key: the key is only used with --sign; add --sign, or drop --key")
	}
	if c.String("split") != "" && c.String("out") == "" {
		return usageError("pack build --split: needs -o FILE")
	}
	// What can be refused is refused before the cache is written: the
	// output path, the split size and the signing key (its passphrase);
	// the pack itself is validated before any of its files is read.
	if o := c.String("out"); o != "" {
		if err := outputPath(o); err != nil {
			return err
		}
		if sp := c.String("split"); sp != "" {
			if _, err := parseSplit(sp); err != nil {
				return err
			}
		}
	}
	var signer *keys.Pair
	if c.Bool("sign") {
		var err error
		if signer, err = s.loadSigner(ctx, c.String("key")); err != nil {
			return err
		}
	}
	// Each file is read once, into the cache's ingest area, hashed as it
	// is written (ADR 0023); the import takes the staged blobs from there.
	var st *cache.Store
	var stage *cache.Stage
	defer func() {
		if stage != nil {
			_ = stage.Close()
		}
	}()
	var opening sync.Mutex
	read := func(name string, r io.Reader) (digest.Digest, int64, error) {
		if buildReading != nil {
			buildReading(name)
		}
		opening.Lock()
		if stage == nil {
			var err error
			if st, err = s.openCache(ctx); err == nil {
				stage, err = st.Stage(ctx)
			}
			if err != nil {
				opening.Unlock()
				return "", 0, err
			}
		}
		opening.Unlock()
		return stage.Add(ctx, "into the cache", r)
	}
	// Three files at once, as an import copies three blobs at once.
	bar := s.newProgress("reading " + filepath.Base(filepath.Clean(c.Args().First())))
	p, a, err := s.loadPackWith(c.Args().First(), pack.LoadOptions{Read: read, Concurrency: 3, Progress: bar.setter()})
	bar.finish()
	if err != nil {
		return err
	}
	if st == nil {
		if st, err = s.openCache(ctx); err != nil {
			return err
		}
	}
	res, err := st.Import(ctx, a, []cache.Artifact{{Descriptor: a.Manifest, Kind: artifact.KindPack, Ref: a.Ref}},
		cache.ImportRecord{From: "build of folder " + filepath.Base(filepath.Clean(c.Args().First())), Verified: []string{"pack validated", "sha256 and size of every file"}},
		cache.ImportOptions{Progress: s.importProgress(), Stage: stage})
	if err != nil {
		return err
	}
	if err := stage.Close(); err != nil {
		return err
	}
	out := struct {
		Pack      artifactSummary  `json:"pack"`
		Files     int              `json:"files"`
		Signature *artifactSummary `json:"signature,omitempty"`
		Bundle    *bundleSummary   `json:"bundle,omitempty"`
	}{Pack: summaryOf(res.Artifacts[0]), Files: len(p.Files)}
	if signer != nil {
		sig, err := s.signInto(ctx, st, signer, a.Manifest, a.Ref)
		if err != nil {
			return err
		}
		out.Signature = sig
	}
	if o := c.String("out"); o != "" {
		bs, err := s.exportBundle(ctx, st, []string{a.Ref}, o, c.String("split"))
		if err != nil {
			return err
		}
		out.Bundle = bs
	}
	return s.emit(out, func(w io.Writer) {
		fmt.Fprintf(w, "built %s %s (%s, %d files)\n", display.Line(out.Pack.Ref), out.Pack.Digest, out.Pack.Status, out.Files)
		if out.Signature != nil {
			fmt.Fprintf(w, "signed %s\n", out.Signature.Digest)
		}
		if out.Bundle != nil {
			renderBundle(w, out.Bundle)
		}
	})
}

// parseSplit reads a --split size: a positive size (parseSize); anything
// else is ErrInvalidPartSize, as is a size that would cut over 999 parts.
func parseSplit(v string) (int64, error) {
	n, err := parseSize(v)
	if err != nil {
		return 0, fmt.Errorf("--split %q: %w: expected a positive size with an optional unit (KiB, MiB, GiB, KB, MB, GB)", v, bundle.ErrInvalidPartSize)
	}
	return n, nil
}

// signInto signs subject with signer and stores the signature in the cache.
func (s *session) signInto(ctx context.Context, st *cache.Store, signer *keys.Pair, subject ocispec.Descriptor, ref string) (*artifactSummary, error) {
	sig, err := signature.Sign(ctx, signer, subject, ref)
	if err != nil {
		return nil, err
	}
	res, err := st.Import(ctx, sig, []cache.Artifact{{Descriptor: sig.Manifest, Kind: artifact.KindSignature}},
		cache.ImportRecord{From: "signature by key " + signer.ID(), Verified: []string{"signed on this machine"}}, cache.ImportOptions{})
	if err != nil {
		return nil, err
	}
	sum := summaryOf(res.Artifacts[0])
	return &sum, nil
}

func (s *session) packSign(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one ID:VERSION"); err != nil {
		return err
	}
	if c.String("key") == "" {
		return usageError("pack sign: --key is required")
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	art, err := st.Resolve(ctx, c.Args().First())
	if err != nil {
		return err
	}
	signer, err := s.loadSigner(ctx, c.String("key"))
	if err != nil {
		return err
	}
	sig, err := s.signInto(ctx, st, signer, art.Descriptor, art.Ref)
	if err != nil {
		return err
	}
	return s.emit(sig, func(w io.Writer) {
		fmt.Fprintf(w, "signed %s: signature %s (%s)\n", display.Line(art.Ref), sig.Digest, sig.Status)
	})
}

func summaryOf(r cache.ArtifactResult) artifactSummary {
	sum := artifactSummary{Ref: r.Artifact.Ref, Kind: r.Artifact.Kind, Digest: r.Artifact.Descriptor.Digest, ArtifactType: r.Artifact.Descriptor.ArtifactType, Status: string(r.Status)}
	if r.Err != nil {
		sum.Reason = r.Err.Error()
	}
	return sum
}

// importProgress draws one progress line per artifact on a terminal.
func (s *session) importProgress() func(cache.Progress) {
	if !s.interactive() {
		return nil
	}
	bar := s.newProgress("")
	return func(p cache.Progress) {
		switch p.Event {
		case cache.ArtifactStarted:
			label := p.Artifact.Ref
			if label == "" {
				label = p.Artifact.Kind + " " + p.Artifact.Descriptor.Digest.Encoded()[:12]
			}
			bar.relabel(label, p.ArtifactTotal)
		case cache.BlobBytes, cache.BlobDone, cache.BlobSkipped:
			bar.set(p.ArtifactBytes, p.ArtifactTotal)
		case cache.ArtifactDone:
			bar.finish()
		}
	}
}

// admissionPolicy is the signature policy of a command that lets content
// in: decided once by package admission from sealed mode, the configuration
// and the command's flags. A relaxation is printed, and recorded by the
// import it governs.
func (s *session) admissionPolicy(c *cli.Context) (admission.Policy, error) {
	pol, err := admission.New(admission.Settings{
		Sealed:        s.sealed,
		ConfigRequire: s.config.RequireSignature,
		Require:       c.Bool("require-signature"),
		SkipSignature: c.Bool("insecure-skip-signature"),
	}, nil, s.tenant)
	if err != nil {
		return pol, err
	}
	if pol.Mode == admission.Skip {
		s.warnf("--insecure-skip-signature: signatures are NOT checked; this is recorded in the import record")
		return pol, nil
	}
	pol.Trust, err = s.trustStore()
	return pol, err
}

// inspectionPolicy checks and reports signatures without requiring them:
// for commands that show what is already in the cache.
func (s *session) inspectionPolicy() (admission.Policy, error) {
	ts, err := s.trustStore()
	return admission.Policy{Mode: admission.Check, Trust: ts, Tenant: s.tenant}, err
}

// bundleArg is the bundle file of a command that takes it as --bundle or
// as its one argument (as oras, crane and zarf take files).
func bundleArg(c *cli.Context, cmd string) (string, error) {
	flag, args := c.String("bundle"), c.Args().Slice()
	switch {
	case len(args) > 1:
		return "", usageError(fmt.Sprintf("%s: expected one bundle FILE, got %d arguments", cmd, len(args)))
	case len(args) == 1 && flag != "" && flag != args[0]:
		return "", usageError(fmt.Sprintf("%s: the bundle is given twice, as --bundle %s and as the argument %s: give it once", cmd, flag, args[0]))
	case len(args) == 1:
		return args[0], nil
	case flag == "":
		return "", usageError(cmd + ": the bundle FILE is required (as the argument, or --bundle FILE)")
	}
	return flag, nil
}

func (s *session) packImport(ctx context.Context, c *cli.Context) error {
	file, err := bundleArg(c, "pack import")
	if err != nil {
		return err
	}
	pol, err := s.admissionPolicy(c)
	if err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	out, _, failure, err := s.importBundle(ctx, st, file, pol)
	if err != nil {
		return err
	}
	if err := s.emit(out, func(w io.Writer) { renderImport(w, out) }); err != nil {
		return err
	}
	return failure
}

// importBundle imports a bundle file (or split set) into the cache under
// pol (admission.ImportBundle). It returns the report, the refs of the packs
// now in the cache, and the first per-artifact failure; err is for failures
// before anything could be judged.
func (s *session) importBundle(ctx context.Context, st *cache.Store, file string, pol admission.Policy) (out importReport, packs []string, failure error, err error) {
	r, err := s.openBundle(ctx, file)
	if err != nil {
		return out, nil, nil, err
	}
	defer r.Close()
	// The parts of a split set are checked beside the import, in order,
	// by their own reader (the import reads blobs in graph order, several
	// at once); each artifact waits for the result before it is recorded,
	// so a bad part leaves nothing in the cache.
	checkCtx, stopCheck := context.WithCancel(ctx)
	var checking sync.WaitGroup
	checking.Add(1)
	go func() {
		defer checking.Done()
		_ = r.CheckParts(checkCtx) // the result is read below
	}()
	defer func() {
		stopCheck()
		checking.Wait()
	}()
	opts := cache.ImportOptions{
		Progress: s.importProgress(),
		Verify: func(ctx context.Context, _ cache.Artifact, _ content.Fetcher) error {
			return r.CheckParts(ctx)
		},
	}
	rep, err := admission.ImportBundle(ctx, st, r, pol, "bundle "+filepath.Base(file), opts)
	s.traceVerdicts(rep.Admission.Verdicts)
	if perr := r.CheckParts(ctx); perr != nil {
		return out, nil, nil, perr
	}
	if err != nil && len(rep.Import.Artifacts) == 0 {
		return out, nil, nil, err
	}
	out = importReport{From: filepath.Base(file), Artifacts: []artifactSummary{}}
	for _, a := range rep.Import.Artifacts {
		out.Artifacts = append(out.Artifacts, summaryOf(a))
	}
	res := rep.Import
	out.BlobsWritten, out.BytesWritten, out.BlobsSkipped, out.BytesSkipped = res.BlobsWritten, res.BytesWritten, res.BlobsSkipped, res.BytesSkipped
	out.Verified = res.Record.Verified
	for _, v := range rep.Admission.Refused() {
		out.Artifacts = append(out.Artifacts, refusedSummary(v))
	}
	failure = rep.Failure()
	if failure == nil {
		failure = err
	}
	return out, rep.Packs, failure, nil
}

func refusedSummary(v admission.Verdict) artifactSummary {
	a := v.Artifact
	return artifactSummary{Ref: a.Ref, Kind: a.Kind, Digest: a.Descriptor.Digest, ArtifactType: a.Descriptor.ArtifactType, Status: "refused", Reason: v.Err.Error()}
}

type importReport struct {
	From         string            `json:"from"`
	Artifacts    []artifactSummary `json:"artifacts"`
	BlobsWritten int               `json:"blobsWritten"`
	BytesWritten int64             `json:"bytesWritten"`
	BlobsSkipped int               `json:"blobsSkipped"`
	BytesSkipped int64             `json:"bytesSkipped"`
	Verified     []string          `json:"verified"`
}

func renderImport(w io.Writer, r importReport) {
	refused := 0
	for _, a := range r.Artifacts {
		if a.Status == "refused" || a.Status == "failed" {
			refused++
		}
	}
	switch {
	case refused == len(r.Artifacts) && refused > 0:
		// Never a success header over a refusal.
		fmt.Fprintf(w, "REFUSED: nothing imported from %s\n", display.Line(r.From))
	case refused > 0:
		fmt.Fprintf(w, "PARTLY REFUSED: imported from %s, %d of %d artifact(s) refused: %s written, %s already present\n",
			display.Line(r.From), refused, len(r.Artifacts), display.Bytes(r.BytesWritten), display.Bytes(r.BytesSkipped))
	default:
		fmt.Fprintf(w, "imported from %s: %s written, %s already present\n", display.Line(r.From), display.Bytes(r.BytesWritten), display.Bytes(r.BytesSkipped))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STATUS\tKIND\tREF\tDIGEST")
	for _, a := range r.Artifacts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Status, display.Line(string(a.Kind)), orDash(a.Ref), a.Digest)
	}
	tw.Flush()
	for _, a := range r.Artifacts {
		if a.Reason != "" {
			fmt.Fprintf(w, "  %s %s: %s\n", a.Status, a.Digest, display.Line(a.Reason))
		}
	}
	for _, v := range r.Verified {
		fmt.Fprintf(w, "  verified: %s\n", display.Line(v))
	}
}

// openBundle opens a bundle file or split set. The parts of a split set
// are checked as they are read (bundle.OpenOptions.DeferPartChecks): by
// Reader.Verify, or by Reader.CheckParts, which every caller calls before
// it reports success.
func (s *session) openBundle(ctx context.Context, file string) (*bundle.Reader, error) {
	bar := s.newProgress("checking parts of " + filepath.Base(file))
	defer bar.finish()
	r, err := bundle.Open(ctx, file, bundle.OpenOptions{Progress: bar.set, DeferPartChecks: true})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fileError{path: file, err: errFileNotFound}
	}
	return r, err
}

func (s *session) packVerify(ctx context.Context, c *cli.Context) error {
	file, err := bundleArg(c, "pack verify")
	if err != nil {
		return err
	}
	pol, err := s.admissionPolicy(c)
	if err != nil {
		return err
	}
	r, err := s.openBundle(ctx, file)
	if err != nil {
		return err
	}
	defer r.Close()
	bar := s.newProgress("verifying " + filepath.Base(file))
	rep, err := r.Verify(ctx, bundle.VerifyOptions{Progress: bar.set})
	bar.finish()
	if err != nil {
		return err
	}
	out := struct {
		Bundle     string             `json:"bundle"`
		Blobs      int                `json:"blobs"`
		Bytes      int64              `json:"bytes"`
		Artifacts  []artifactSummary  `json:"artifacts"`
		Signatures []signatureSummary `json:"signatures"`
	}{Bundle: filepath.Base(file), Blobs: rep.Blobs, Bytes: rep.Bytes, Artifacts: []artifactSummary{}, Signatures: []signatureSummary{}}
	var firstErr error
	for _, e := range rep.Entries {
		a := artifactSummary{Ref: e.Ref, Kind: e.Kind, Digest: e.Descriptor.Digest, ArtifactType: e.Descriptor.ArtifactType, Status: "ok"}
		err := e.Err
		if err == nil {
			v, cerr := pol.Check(ctx, r, cache.Artifact{Descriptor: e.Descriptor, Kind: e.Kind, Ref: e.Ref}, admission.Claim{})
			if cerr != nil {
				return cerr
			}
			s.traceVerdicts([]admission.Verdict{v})
			out.Signatures = append(out.Signatures, signatureSummaries(e.Ref, v.Signatures)...)
			err = v.Err
			if err == nil && pol.Mode == admission.Check {
				// Not required, but present and refuted: verify fails.
				err = signature.Refuted(e.Ref, v.Signatures)
			}
		}
		if err != nil {
			a.Status, a.Reason = "failed", err.Error()
			if firstErr == nil {
				firstErr = err
			}
		}
		out.Artifacts = append(out.Artifacts, a)
	}
	if err := s.emit(out, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %d blobs, %s hashed\n", display.Line(out.Bundle), out.Blobs, display.Bytes(out.Bytes))
		for _, a := range out.Artifacts {
			fmt.Fprintf(w, "  %-6s %-17s %s %s\n", a.Status, display.Line(string(a.Kind)), orDash(a.Ref), a.Digest)
			if a.Reason != "" {
				fmt.Fprintf(w, "         %s\n", display.Line(a.Reason))
			}
		}
		renderSignatures(w, out.Signatures)
	}); err != nil {
		return err
	}
	return firstErr
}

type signatureSummary struct {
	Subject string        `json:"subject"`
	Digest  digest.Digest `json:"digest"`
	KeyID   string        `json:"keyId,omitempty"`
	KeyName string        `json:"keyName,omitempty"`
	Valid   bool          `json:"valid"`
	Reason  string        `json:"reason,omitempty"`
}

func signatureSummaries(subject string, res []signature.Result) []signatureSummary {
	out := make([]signatureSummary, 0, len(res))
	for _, r := range res {
		out = append(out, signatureSummary{Subject: subject, Digest: r.Digest, KeyID: r.KeyID, KeyName: r.KeyName, Valid: r.Valid, Reason: r.Reason})
	}
	return out
}

func renderSignatures(w io.Writer, sigs []signatureSummary) {
	for _, sg := range sigs {
		state := "valid"
		if !sg.Valid {
			state = "NOT VALID: " + sg.Reason
		}
		name := sg.KeyName
		if name == "" {
			name = "unknown key"
		}
		fmt.Fprintf(w, "  signature %s of %s by %s (%s): %s\n", sg.Digest, sg.Subject, display.Line(name), orDash(sg.KeyID), display.Line(state))
	}
}

type bundleSummary struct {
	File   string        `json:"file"`
	Size   int64         `json:"size"`
	Digest digest.Digest `json:"digest"`
	Blobs  int           `json:"blobs"`
	Parts  []bundle.Part `json:"parts,omitempty"`
	Refs   []string      `json:"refs"`
}

func renderBundle(w io.Writer, b *bundleSummary) {
	fmt.Fprintf(w, "wrote %s: %s, %d blobs, sha256 %s\n", display.Line(b.File), display.Bytes(b.Size), b.Blobs, b.Digest.Encoded())
	for _, p := range b.Parts {
		fmt.Fprintf(w, "  part %s  %s  sha256 %s\n", display.Line(p.Name), display.Bytes(p.Size), p.SHA256)
	}
}

// buildReading, when set, runs as a build starts reading each file of
// its pack (after the stat that precedes the read).
var buildReading func(name string)

// exportHeld, when set, runs in an export once what it will read is held
// and before it reads it. Only tests set it (to run gc at that point).
var exportHeld func()

// exportBundle writes refs and their referrers from the cache to a bundle
// file. What it reads is held against a concurrent `cache gc` until it is
// written.
func (s *session) exportBundle(ctx context.Context, st *cache.Store, refs []string, out, split string) (*bundleSummary, error) {
	arts, hold, err := st.HoldClosure(ctx, refs)
	if err != nil {
		return nil, err
	}
	defer hold.Release()
	if exportHeld != nil {
		exportHeld()
	}
	entries := make([]bundle.Entry, 0, len(arts))
	for _, a := range arts {
		entries = append(entries, bundle.Entry{Descriptor: a.Descriptor, Kind: a.Kind, Ref: a.Ref})
	}
	if err := s.prepareOutput(out); err != nil {
		return nil, err
	}
	bar := s.newProgress("writing " + filepath.Base(out))
	defer bar.finish()
	opts := bundle.WriteOptions{Progress: bar.set}
	var sum bundle.Summary
	if split != "" {
		size, perr := parseSplit(split)
		if perr != nil {
			return nil, perr
		}
		sum, err = bundle.WriteSplit(ctx, out, size, st, entries, opts)
	} else {
		sum, err = bundle.WriteFile(ctx, out, st, entries, opts)
	}
	if err != nil {
		return nil, err
	}
	bs := &bundleSummary{File: out, Size: sum.Size, Digest: sum.Digest, Blobs: sum.Blobs, Parts: sum.Parts, Refs: refs}
	return bs, nil
}

func (s *session) packExport(ctx context.Context, c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("pack export: expected at least one ID:VERSION")
	}
	if c.String("out") == "" {
		return usageError("pack export: -o FILE is required")
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	bs, err := s.exportBundle(ctx, st, c.Args().Slice(), c.String("out"), c.String("split"))
	if err != nil {
		return err
	}
	return s.emit(bs, func(w io.Writer) { renderBundle(w, bs) })
}

func (s *session) packList(ctx context.Context, c *cli.Context) error {
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	entries, err := st.List(ctx, c.String("kind"))
	if err != nil {
		return err
	}
	out := make([]artifactSummary, 0, len(entries))
	for _, e := range entries {
		a := artifactSummary{Ref: e.Ref, Kind: e.Kind, Digest: e.Descriptor.Digest, ArtifactType: e.Descriptor.ArtifactType}
		if e.Subject != nil {
			a.Subject = e.Subject.Digest
		}
		out = append(out, a)
	}
	return s.emit(out, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tREF\tDIGEST\tSUBJECT")
		for _, a := range out {
			sub := "-"
			if a.Subject != "" {
				sub = a.Subject.Encoded()[:12]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", display.Line(string(a.Kind)), orDash(a.Ref), a.Digest, sub)
		}
		tw.Flush()
	})
}

func (s *session) packShow(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one ID:VERSION"); err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	pol, err := s.inspectionPolicy()
	if err != nil {
		return err
	}
	lp, err := pol.LoadPack(ctx, st, c.Args().First())
	if err != nil {
		return err
	}
	art, p, a := lp.Verdict.Artifact, lp.Pack, lp.Artifact
	res := lp.Verdict.Signatures
	imports, err := st.Imports(ctx, art.Descriptor.Digest)
	if err != nil {
		return err
	}
	for i := range imports {
		imports[i] = ownImport(imports[i], art.Ref, art.Descriptor.Digest)
	}
	type fileOut struct {
		Path   string        `json:"path"`
		Size   int64         `json:"size"`
		Digest digest.Digest `json:"digest"`
		Mode   string        `json:"mode"`
	}
	out := struct {
		Ref         string               `json:"ref"`
		Digest      digest.Digest        `json:"digest"`
		Description string               `json:"description"`
		Files       []fileOut            `json:"files"`
		Size        int64                `json:"size"`
		Signatures  []signatureSummary   `json:"signatures"`
		Imports     []cache.ImportRecord `json:"imports"`
	}{Ref: art.Ref, Digest: art.Descriptor.Digest, Description: p.Manifest.Metadata.Description, Signatures: signatureSummaries(art.Ref, res), Imports: imports}
	for _, f := range a.Config.Files {
		out.Files = append(out.Files, fileOut{Path: f.Path, Size: f.Size, Digest: f.Digest, Mode: f.Mode})
		out.Size += f.Size
	}
	if out.Imports == nil {
		out.Imports = []cache.ImportRecord{}
	}
	return s.emit(out, func(w io.Writer) {
		fmt.Fprintf(w, "pack:        %s\ndigest:      %s\ndescription: %s\n", display.Line(out.Ref), out.Digest, display.Line(out.Description))
		fmt.Fprintf(w, "files:       %d (%s)\n", len(out.Files), display.Bytes(out.Size))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, f := range out.Files {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", f.Mode, display.Line(f.Path), f.Size, f.Digest)
		}
		tw.Flush()
		fmt.Fprintf(w, "signatures:  %d\n", len(out.Signatures))
		renderSignatures(w, out.Signatures)
		fmt.Fprintf(w, "imports:     %d\n", len(out.Imports))
		for _, im := range out.Imports {
			fmt.Fprintf(w, "  %s from %s: %s\n", im.Time.UTC().Format("2006-01-02T15:04:05Z"), display.Line(im.From), display.Line(strings.Join(im.Verified, "; ")))
		}
	})
}

// ownImport is one pack's view of an import record: the checks of the
// whole import, its own verdicts and its own entry, so what `pack show`
// prints does not depend on what else the bundle held.
func ownImport(r cache.ImportRecord, ref string, d digest.Digest) cache.ImportRecord {
	var verified []string
	for _, line := range r.Verified {
		if of, ok := admission.VerdictRef(line); !ok || of == ref {
			verified = append(verified, line)
		}
	}
	var own []cache.ImportedArtifact
	for _, a := range r.Artifacts {
		if a.Digest == d {
			own = append(own, a)
		}
	}
	r.Verified, r.Artifacts = verified, own
	return r
}

func (s *session) packRemove(ctx context.Context, c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("pack rm: expected at least one ID:VERSION")
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	var removed []string
	for _, ref := range c.Args().Slice() {
		if err := st.Remove(ctx, ref); err != nil {
			return err
		}
		removed = append(removed, ref)
	}
	return s.emit(struct {
		Removed []string `json:"removed"`
	}{removed}, func(w io.Writer) {
		for _, r := range removed {
			fmt.Fprintf(w, "removed %s (run `stella cache gc` to free its blobs)\n", display.Line(r))
		}
	})
}
