package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"stellaops.io/stella/evidence"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
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

Examples:
   stella pack runs export --run run:default:20261127T163555.123456Z -o /media/usb0/run.evidence.tar --key vault:runner
   stella pack runs export --run run:default:20261127T163555.123456Z -o run.evidence.tar --key runner.key --split 1GiB`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "run", Usage: "run id (required)"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "bundle file to write (required)"},
			&cli.StringFlag{Name: "key", Usage: "runner key: a key file or vault:NAME (default: the config's runKey)"},
			&cli.BoolFlag{Name: "partial", Usage: "export a run still in progress; the evidence says it is partial"},
			&cli.StringFlag{Name: "split", Usage: "split into volumes of this size: NAME.001, NAME.002, ... and NAME.parts.json"},
		},
		Action: action(s.runsExport),
	}
}

// evidenceCommand is `stella pack evidence`.
func (s *session) evidenceCommand() *cli.Command {
	return &cli.Command{
		Name:  "evidence",
		Usage: "verify run evidence offline",
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
		},
	}
}

// evidenceExport is the JSON shape of `runs export`.
type evidenceExport struct {
	RunID    string        `json:"runId"`
	State    string        `json:"state"`
	Partial  bool          `json:"partial"`
	Evidence digest.Digest `json:"evidence"` // the evidence manifest
	KeyID    string        `json:"keyId"`
	bundleSummary
}

func (s *session) runsExport(ctx context.Context, c *cli.Context) error {
	id, out := c.String("run"), c.String("out")
	if id == "" || out == "" {
		return usageError("runs export: --run RUN and -o FILE are required")
	}
	key := c.String("key")
	if key == "" {
		key = s.config.RunKey
	}
	if key == "" {
		return usageError("runs export: no runner key: give --key FILE.key or --key vault:NAME, or set runKey in the config")
	}
	if err := outputPath(out); err != nil {
		return err
	}
	var split int64
	if v := c.String("split"); v != "" {
		n, err := parseSize(v)
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
		StellaVersion: version, Sealed: s.sealed, Signer: signer})
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
	bar := s.newProgress("writing " + filepath.Base(out))
	sum, err := ev.Write(ctx, out, split, bar.set)
	bar.finish()
	if err != nil {
		return err
	}
	// A whole export of a finished run lets `runs gc` remove it later.
	if !ev.Predicate.Partial && run.Terminal(in.Record.State) {
		if err := rs.RecordExport(ctx, id, runs.Export{Time: s.now().UTC(), FileDigest: sum.Digest, Evidence: desc.Digest,
			State: in.Record.State, Ended: in.Record.Ended}); err != nil {
			return err
		}
	}
	res := evidenceExport{RunID: id, State: ev.Predicate.State, Partial: ev.Predicate.Partial, Evidence: desc.Digest, KeyID: signer.ID(),
		bundleSummary: bundleSummary{File: out, Size: sum.Size, Digest: sum.Digest, Blobs: sum.Blobs, Parts: sum.Parts, Refs: []string{}}}
	if res.Partial {
		s.warnf("run %s is %s: the evidence is PARTIAL", id, res.State)
	}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "evidence %s of run %s (%s%s), signed by key %s\n", desc.Digest, id, res.State, partialText(res.Partial), res.KeyID)
		renderBundle(w, &res.bundleSummary)
	})
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
			fmt.Fprintf(w, "ok      %-26s %s\n", ch.Part, ch.Check)
		}
		if rep.Failure != nil {
			fmt.Fprintf(w, "FAILED  %-26s %s\n", rep.Failure.Part, rep.Failure.Code)
			return
		}
		r := rep.Run
		fmt.Fprintf(w, "verified: evidence %s of run %s (%s%s), pack %s:%s, plan %s, tenant %s, stella %s, sealed %v\n",
			rep.Evidence, r.RunID, r.State, partialText(r.Partial), r.Pack.Name, r.Pack.Version, r.PlanHash, r.Tenant, r.StellaVersion, r.Sealed)
	})
	if verr != nil {
		return verr
	}
	return err
}
