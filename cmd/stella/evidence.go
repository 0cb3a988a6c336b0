package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"stellaops.io/stella/artifact"
	"stellaops.io/stella/display"
	"stellaops.io/stella/evidence"
	"stellaops.io/stella/mirror"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
	"stellaops.io/stella/trust"
)

// runsExportCommand is `stella pack runs export`.
func (s *session) runsExportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a run's signed evidence to a bundle file",
		Description: `Writes the evidence of a finished run as a bundle file (docs/evidence.md): the canonical
plan, the inputs lock (secret references, never values), the run record (steps, isolation,
timeline), the redacted log, the files named by the pack's spec.outputs[].path, the approval
decisions that let it pass its gates with the ledger entries they were recorded under, and a
DSSE envelope over an in-toto statement naming the pack and every part, signed with a runner
key that verifiers trust with the role Packs.Run. Exporting the same finished run twice gives
the same bytes. A run still in progress is refused unless --partial.

With --to, the evidence is pushed to the registry as a referrer of its pack, into
<to>/<pack name> where the pack was mirrored (the pack must be there already): every host
that runs the pack pushes its evidence beside it, and ` + "`stella pack evidence list`" + ` shows them all.
-o and --to may be given together; at least one is required.

Examples:
   stella pack runs export --run run:default:20261127T163555.123456Z -o /media/usb0/run.evidence.tar --key vault:runner
   stella pack runs export --run run:default:20261127T163555.123456Z -o run.evidence.tar --key runner.key --split 1GiB
   stella pack runs export --run run:default:20261127T163555.123456Z --to registry.sealed.local:5000/packs --key vault:runner`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "run", Usage: "run id (required)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "bundle file to write"},
			&cli.StringFlag{Name: "to", Usage: "registry/repository prefix: push the evidence beside its pack, in <to>/<pack name>"},
			&cli.StringFlag{Name: "key", Usage: "runner key: a key file or vault:NAME (default: the config's runKey)"},
			&cli.BoolFlag{Name: "partial", Usage: "export a run still in progress; the evidence says it is partial"},
			&cli.StringFlag{Name: "split", Usage: "split into volumes of this size: NAME.001, NAME.002, ... and NAME.parts.json"},
		}, accessFlags()...),
		Action: action(s.runsExport),
	}
}

// evidenceCommand is `stella pack evidence`.
func (s *session) evidenceCommand() *cli.Command {
	return &cli.Command{
		Name:  "evidence",
		Usage: "verify run evidence offline, list it in a registry",
		Subcommands: []*cli.Command{
			{
				Name:      "verify",
				Usage:     "verify an evidence bundle with only the trust store",
				ArgsUsage: "FILE",
				Description: `Checks, offline and in this order: the bundle (SHA256SUMS, structure, every blob's
sha256), the run signature (a trusted key holding Packs.Run for the run's tenant), every
part's digest against the signed statement, the plan hash recomputed from the plan, the
parts' agreement, the ledger entries' hash chain, and each approval envelope (a trusted key
holding the gate's role, bound to the same plan hash, gate and tenant, recorded in the
ledger). Prints each check; stops at the first failure with a code and the part it failed
on. FILE may be a split set (NAME.parts.json or NAME.001).

Examples:
   stella pack evidence verify /media/usb0/run.evidence.tar
   stella --output json pack evidence verify run.evidence.tar.parts.json`,
				Action: action(s.evidenceVerify),
			},
			{
				Name:      "list",
				Usage:     "list the evidence every host pushed for a pack in a registry, verifying each with --verify",
				ArgsUsage: "REGISTRY/REPOSITORY:TAG|@DIGEST",
				Description: `REF names a pack in a registry (as ` + "`stella pack mirror pull`" + ` takes it). Lists the evidence pushed as
its referrers (` + "`stella pack runs export --to`" + `), one line each: evidence digest, run, tenant, state,
the key that signed it and, with --verify, the outcome. Without --verify the run, tenant, state
and key are what the evidence claims, read from its statement without checking the signature.
With --verify each one is read from the registry (every blob checked against its digest) and
verified exactly as ` + "`stella pack evidence verify`" + ` verifies a file, with the trust store of this home;
a failure names the evidence, the part and the code, and the command exits with the code of
the first failure once every one was checked.

Examples:
   stella pack evidence list registry.sealed.local:5000/packs/backup-database:0.4.2
   stella --output json pack evidence list --verify registry.sealed.local:5000/packs/backup-database:0.4.2`,
				Flags: append([]cli.Flag{
					&cli.BoolFlag{Name: "verify", Usage: "verify each evidence fully with this home's trust store"},
				}, accessFlags()...),
				Action: action(s.evidenceList),
			},
		},
	}
}

// evidenceExport is the JSON shape of `runs export`.
type evidenceExport struct {
	RunID    string        `json:"runId"`
	State    string        `json:"state"`
	Partial  bool          `json:"partial"`
	Evidence digest.Digest `json:"evidence"` // the evidence manifest
	Pack     digest.Digest `json:"pack"`     // its subject
	KeyID    string        `json:"keyId"`
	*bundleSummary
	Pushed *mirrorOut `json:"pushed,omitempty"`
}

func (s *session) runsExport(ctx context.Context, c *cli.Context) error {
	id, out, to := c.String("run"), c.String("out"), c.String("to")
	if id == "" || (out == "" && to == "") {
		return usageError("runs export: --run RUN and -o FILE or --to REGISTRY/PREFIX are required")
	}
	key := c.String("key")
	if key == "" {
		key = s.config.RunKey
	}
	if key == "" {
		return usageError("runs export: no runner key: give --key FILE.key or --key vault:NAME, or set runKey in the config")
	}
	if out != "" {
		if err := s.prepareOutput(out); err != nil {
			return err
		}
	}
	var base mirror.Reference
	if to != "" {
		var err error
		if base, err = mirror.ParseRef(to); err != nil {
			return err
		}
		if base.Tag != "" || base.Digest != "" {
			return usageError(fmt.Sprintf("--to %s: give a registry/repository prefix without a tag; the evidence goes to <prefix>/<pack name>", to))
		}
	}
	var split int64
	if v := c.String("split"); v != "" {
		n, err := parseSplit(v)
		if err != nil {
			return err
		}
		split = n
	}
	// The key first: a passphrase prompt must not hold the cache.
	signer, err := s.loadSigner(ctx, key)
	if err != nil {
		return err
	}
	st, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	defer rs.Close()
	in, err := evidence.Collect(ctx, st, rs, id, evidence.CollectOptions{Partial: c.Bool("partial"),
		StellaVersion: currentBuild().Version, Sealed: s.sealed, Signer: signer})
	if err != nil {
		return err
	}
	ev, err := evidence.Build(ctx, in)
	if err != nil {
		return err
	}
	desc, err := ev.Descriptor()
	if err != nil {
		return err
	}
	res := evidenceExport{RunID: id, State: ev.Predicate.State, Partial: ev.Predicate.Partial, Evidence: desc.Digest, Pack: ev.Pack.Digest, KeyID: signer.ID()}
	if res.Partial {
		s.warnf("run %s is %s: the evidence is PARTIAL", display.Line(id), res.State)
	}
	if out != "" {
		bar := s.newProgress("writing " + filepath.Base(out))
		sum, err := ev.Write(ctx, out, split, bar.set)
		bar.finish()
		if err != nil {
			return err
		}
		res.bundleSummary = &bundleSummary{File: out, Size: sum.Size, Digest: sum.Digest, Blobs: sum.Blobs, Parts: sum.Parts, Refs: []string{}}
	}
	var perr error
	if to != "" {
		dst := base
		dst.Repository = strings.TrimSuffix(base.Repository, "/") + "/" + ev.Predicate.Pack.Name
		res.Pushed = &mirrorOut{Destination: dst.Name(), Artifacts: []artifactSummary{}}
		perr = s.pushEvidence(ctx, c, ev, dst, res.Pushed)
		if perr != nil && len(res.Pushed.Artifacts) == 0 {
			return perr
		}
	}
	// A whole export (written, or pushed) of a finished run lets `runs gc`
	// remove it later.
	if perr == nil && !ev.Predicate.Partial && run.Terminal(in.Record.State) {
		var file digest.Digest
		if res.bundleSummary != nil {
			file = res.bundleSummary.Digest
		}
		if err := rs.RecordExport(ctx, id, runs.Export{Time: s.now().UTC(), FileDigest: file, Evidence: desc.Digest,
			State: in.Record.State, Ended: in.Record.Ended}); err != nil {
			return err
		}
	}
	err = s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "evidence %s of run %s (%s%s), signed by key %s\n", desc.Digest, display.Line(id), res.State, partialText(res.Partial), display.Line(res.KeyID))
		if res.bundleSummary != nil {
			renderBundle(w, res.bundleSummary)
		}
		if res.Pushed != nil {
			renderMirror(w, "pushed to", *res.Pushed)
		}
	})
	if perr != nil {
		return perr
	}
	return err
}

// pushEvidence pushes built evidence to dst, beside its pack.
func (s *session) pushEvidence(ctx context.Context, c *cli.Context, ev *evidence.Evidence, dst mirror.Reference, out *mirrorOut) error {
	desc, src, err := ev.Storage(ctx)
	if err != nil {
		return err
	}
	opts, err := s.mirrorOptions(c, dst.Host)
	if err != nil {
		return err
	}
	rep, err := mirror.Push(ctx, src, []mirror.Artifact{{Descriptor: desc}}, dst, opts)
	first := addReport(out, rep)
	if err != nil {
		return err
	}
	return first
}

func partialText(partial bool) string {
	if partial {
		return ", PARTIAL"
	}
	return ""
}

func (s *session) evidenceVerify(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one FILE"); err != nil {
		return err
	}
	ts, err := s.trustStore()
	if err != nil {
		return err
	}
	file := c.Args().First()
	rep, verr := evidence.Verify(ctx, file, evidence.VerifyOptions{Trust: ts})
	if verr != nil && rep.Failure != nil {
		rep.Failure.Code = lookupError(verr).Code
	}
	err = s.emit(rep, func(w io.Writer) {
		for _, ch := range rep.Checks {
			fmt.Fprintf(w, "ok      %-26s %s\n", display.Line(ch.Part), display.Line(ch.Check))
		}
		if rep.Failure != nil {
			fmt.Fprintf(w, "FAILED  %-26s %s\n", display.Line(rep.Failure.Part), rep.Failure.Code)
			return
		}
		r := rep.Run
		fmt.Fprintf(w, "verified: evidence %s of run %s (%s%s), pack %s:%s, plan %s, tenant %s, stella %s, sealed %v\n",
			rep.Evidence, display.Line(r.RunID), display.Line(string(r.State)), partialText(r.Partial), display.Line(r.Pack.Name), display.Line(r.Pack.Version), r.PlanHash, display.Line(r.Tenant), display.Line(r.StellaVersion), r.Sealed)
	})
	if verr != nil {
		return verr
	}
	return err
}

// evidenceList is the JSON shape of `evidence list`.
type evidenceList struct {
	Pack     string          `json:"pack"` // host/repository@digest
	Verify   bool            `json:"verify"`
	Evidence []evidenceEntry `json:"evidence"`
}

// evidenceEntry is one evidence listed: what it claims, and with --verify
// whether it verified (the report) or which part failed.
type evidenceEntry struct {
	Digest   digest.Digest     `json:"digest"`
	RunID    string            `json:"runId"`
	Tenant   string            `json:"tenant"`
	State    string            `json:"state"`
	Partial  bool              `json:"partial"`
	KeyID    string            `json:"keyId"`
	KeyName  string            `json:"keyName,omitempty"`
	Verified bool              `json:"verified"`
	Failure  *evidence.Failure `json:"failure,omitempty"`
	Report   *evidence.Report  `json:"report,omitempty"`
}

func (s *session) evidenceList(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one pack reference REGISTRY/REPOSITORY:TAG or @DIGEST"); err != nil {
		return err
	}
	ref, err := mirror.ParseRef(c.Args().First())
	if err != nil {
		return err
	}
	var ts *trust.Store
	if c.Bool("verify") {
		if ts, err = s.trustStore(); err != nil {
			return err
		}
	}
	opts, err := s.mirrorOptions(c, ref.Host)
	if err != nil {
		return err
	}
	repo, err := mirror.Open(ref, opts)
	if err != nil {
		return err
	}
	pack, err := repo.Resolve(ctx)
	if err != nil {
		return err
	}
	listed, err := repo.Referrers(ctx, pack, artifact.ArtifactTypeEvidence)
	if err != nil {
		return err
	}
	res := evidenceList{Pack: ref.Name() + "@" + pack.Digest.String(), Verify: ts != nil, Evidence: []evidenceEntry{}}
	var first error
	fail := func(e *evidenceEntry, err error) {
		var pe *evidence.PartError
		part := evidence.PartManifest
		if errors.As(err, &pe) {
			part = pe.Part
		}
		e.Failure = &evidence.Failure{Part: part, Code: lookupError(err).Code, Message: err.Error()}
		if first == nil {
			first = fmt.Errorf("evidence %s: %w", e.Digest, err)
		}
	}
	for _, d := range listed {
		e := evidenceEntry{Digest: d.Digest}
		sum, err := evidence.Inspect(ctx, repo, d)
		if err == nil && sum.Pack != pack.Digest {
			err = fmt.Errorf("evidence part %s: %w: of pack %s, listed under %s", evidence.PartManifest, evidence.ErrInvalid, sum.Pack, pack.Digest)
		}
		if err != nil {
			fail(&e, err)
			res.Evidence = append(res.Evidence, e)
			continue
		}
		p := sum.Claimed
		e.RunID, e.Tenant, e.State, e.Partial = p.RunID, p.Tenant, p.State, p.Partial
		if len(sum.KeyIDs) > 0 {
			e.KeyID = sum.KeyIDs[0]
		}
		if ts != nil {
			rep, verr := evidence.VerifyArtifact(ctx, repo, d, ref.Name()+"@"+d.Digest.String(), pack.Digest, evidence.VerifyOptions{Trust: ts})
			e.Report = rep
			if verr != nil {
				fail(&e, verr)
				rep.Failure.Code = e.Failure.Code
			} else {
				e.Verified = true
				e.KeyID, e.KeyName = rep.Signer.KeyID, rep.Signer.KeyName
				r := rep.Run
				e.RunID, e.Tenant, e.State, e.Partial = r.RunID, r.Tenant, r.State, r.Partial
			}
		}
		res.Evidence = append(res.Evidence, e)
	}
	err = s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "%d evidence of pack %s\n", len(res.Evidence), display.Line(res.Pack))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  EVIDENCE\tRUN\tTENANT\tSTATE\tKEY\tSTATUS")
		for _, e := range res.Evidence {
			status := "unverified"
			switch {
			case e.Failure != nil:
				status = "FAILED " + display.Line(e.Failure.Part) + " " + e.Failure.Code
			case e.Verified:
				status = "verified"
			}
			key := orDash(e.KeyID)
			if e.KeyName != "" {
				key = display.Line(e.KeyName) + " " + display.Line(e.KeyID)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s%s\t%s\t%s\n", e.Digest, orDash(e.RunID), orDash(e.Tenant), orDash(e.State), partialText(e.Partial), key, status)
		}
		tw.Flush()
		if ts == nil && len(res.Evidence) > 0 {
			fmt.Fprintln(w, "  (run, tenant, state and key are what each evidence claims: --verify checks them)")
		}
	})
	if first != nil {
		return first
	}
	return err
}
