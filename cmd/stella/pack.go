package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/display"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/secret"
	"stellaops.io/stella/trust"
)

func (s *session) packCommand() *cli.Command {
	return &cli.Command{
		Name:  "pack",
		Usage: "author, plan, move and run task packs",
		Subcommands: append([]*cli.Command{
			{
				Name:      "init",
				Usage:     "scaffold a new pack that validates and plans as is",
				ArgsUsage: "NAME",
				Description: `Writes a pack folder named NAME (or --dir) with pack.yaml, an input schema,
scripts and a README.

Examples:
   stella pack init rotate-registry-credentials
   stella pack init --dir packs/backup-db backup-db`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Usage: "folder to create", DefaultText: "./NAME"},
				},
				Action: action(s.packInit),
			},
			{
				Name:      "validate",
				Usage:     "check a pack folder (or every pack of a bundle file) and report every problem at once",
				ArgsUsage: "DIR",
				Description: `Checks pack.yaml (types, unknown fields, duplicate keys, anchors, semver, step and
approval ids, expressions) and the schemas it names. With --bundle, checks the
bundle file (structure, checksums, digests) and validates every pack in it, which
must rebuild to its own digest. Exit 0 only when everything is valid.

Examples:
   stella pack validate ./rotate-registry-credentials
   stella pack validate --bundle /media/usb0/packs.stella.tar
   stella --output json pack validate ./my-pack`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "bundle", Usage: "validate the packs of this bundle file instead of a folder"},
				},
				Action: action(s.packValidate),
			},
			{
				Name:  "plan",
				Usage: "compute the plan hash, required approvals and secret summary of a run",
				Description: `Resolves inputs (defaults, types, schemas), expands map and loop steps, decides
when-conditions that depend only on inputs, and prints the plan hash that
approvals and evidence are bound to. Secret values are never read or shown.

Examples:
   stella pack plan --pack ./rotate-registry-credentials --inputs inputs.json
   stella pack plan --pack ./backup-db --out plan.json
   stella --output json pack plan --pack ./backup-db`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "pack", Usage: "pack folder, or ID:VERSION of a pack in the cache (required)"},
					&cli.StringFlag{Name: "inputs", Usage: "JSON file of input values (- for stdin)"},
					&cli.StringFlag{Name: "out", Usage: "write the canonical plan JSON to this file"},
					&cli.BoolFlag{Name: "save", Usage: "save the plan in the cache under its hash, for approvals (see `stella pack plans`)"},
				},
				Action: action(s.packPlan),
			},
		}, append(append(append(s.artifactCommands(), s.mirrorCommands()...), s.approveCommands()...), append(s.runCommands(), s.evidenceCommand())...)...),
	}
}

func (s *session) packInit(_ context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one pack NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	dir := c.String("dir")
	if dir == "" {
		dir = name
	}
	files, err := pack.Scaffold(dir, name)
	if err != nil {
		return err
	}
	res := struct {
		Name  string   `json:"name"`
		Dir   string   `json:"dir"`
		Files []string `json:"files"`
	}{name, dir, files}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "created pack %s in %s\n", display.Line(name), display.Line(dir))
		for _, f := range files {
			fmt.Fprintf(w, "  %s\n", display.Line(f))
		}
		fmt.Fprintf(w, "next: stella pack validate %s && stella pack plan --pack %s\n", dir, dir)
	})
}

// packSummary is the JSON shape naming a pack.
type packSummary struct {
	Name    string        `json:"name"`
	Version string        `json:"version"`
	Digest  digest.Digest `json:"digest"`
	Steps   int           `json:"steps"`
	Files   int           `json:"files"`
}

// maxSourceDateEpoch is 9999-12-31T23:59:59Z, the last time RFC 3339 can write.
const maxSourceDateEpoch = 253402300799

// buildOptions stamps the build time from SOURCE_DATE_EPOCH when it is set:
// whole seconds since 1970-01-01 UTC, as `date +%s` prints them. Any other
// value is a usage error, not ignored, so a build meant to be reproducible
// never silently loses its stamp.
func (s *session) buildOptions() (artifact.BuildOptions, error) {
	var opts artifact.BuildOptions
	v := s.getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return opts, nil
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs < 0 || secs > maxSourceDateEpoch || strings.HasPrefix(v, "+") {
		return opts, usageError(fmt.Sprintf("SOURCE_DATE_EPOCH %q: expected whole seconds since 1970-01-01 UTC, as `date +%%s` prints them", v))
	}
	t := time.Unix(secs, 0).UTC()
	opts.Created = &t
	return opts, nil
}

// loadPack loads a pack folder and derives its artifact (for the digest).
func (s *session) loadPack(dir string) (*pack.Pack, *artifact.Pack, error) {
	return s.loadPackWith(dir, pack.LoadOptions{})
}

// loadPackWith is loadPack with the pack loader's options.
func (s *session) loadPackWith(dir string, lo pack.LoadOptions) (*pack.Pack, *artifact.Pack, error) {
	opts, err := s.buildOptions()
	if err != nil {
		return nil, nil, err
	}
	p, err := pack.LoadDirWith(dir, lo)
	if err != nil {
		return nil, nil, err
	}
	a, err := artifact.Build(p, opts)
	if err != nil {
		return nil, nil, err
	}
	return p, a, nil
}

func summarize(p *pack.Pack, a *artifact.Pack) packSummary {
	n := 0
	var count func([]pack.Step)
	count = func(steps []pack.Step) {
		for _, st := range steps {
			n++
			switch {
			case st.Parallel != nil:
				count(st.Parallel.Steps)
			case st.Map != nil:
				count(st.Map.Steps)
			case st.Loop != nil:
				count(st.Loop.Steps)
			case st.Conditional != nil:
				for _, b := range st.Conditional.Branches {
					count(b.Steps)
				}
				count(st.Conditional.Else)
			}
		}
	}
	count(p.Manifest.Spec.Steps)
	return packSummary{Name: p.Manifest.Metadata.Name, Version: p.Manifest.Metadata.Version, Digest: a.Digest(), Steps: n, Files: len(p.Files)}
}

func (s *session) packValidate(ctx context.Context, c *cli.Context) error {
	if c.String("bundle") != "" {
		if err := argsExactly(c, 0, "no folder with --bundle"); err != nil {
			return err
		}
		return s.validateBundle(ctx, c.String("bundle"))
	}
	if err := argsExactly(c, 1, "one pack folder DIR"); err != nil {
		return err
	}
	dir := c.Args().First()
	p, a, err := s.loadPack(dir)
	if err != nil {
		return err
	}
	// Whether a gate's role approves is the site's decision: the trust
	// store's policy (a missing store is the default, Packs.Approve only).
	ts, err := s.trustStore()
	if err != nil {
		return err
	}
	roles := slices.Concat(trust.DefaultApproverRoles, ts.Policy().ApproverRoles)
	if problems := p.ApproverRoleProblems(ts.IsApproverRole, roles); len(problems) > 0 {
		return &pack.ValidationError{Kind: pack.ErrManifestInvalid, Problems: problems}
	}
	sum := summarize(p, a)
	res := struct {
		Valid    bool           `json:"valid"`
		Pack     packSummary    `json:"pack"`
		Problems []pack.Problem `json:"problems"`
	}{true, sum, []pack.Problem{}}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "%s: valid pack %s:%s (%d steps, %d files, digest %s)\n", display.Line(filepath.Join(dir, pack.ManifestFile)), display.Line(sum.Name), display.Line(sum.Version), sum.Steps, sum.Files, sum.Digest)
	})
}

// planResult is the JSON shape of `stella pack plan`.
type planResult struct {
	PlanHash  digest.Digest   `json:"planHash"`
	Pack      plan.PackRef    `json:"pack"`
	Approvals []plan.Approval `json:"approvals"`
	Secrets   []secret.Status `json:"secrets"`
	Steps     []planStep      `json:"steps"`
	Out       string          `json:"out,omitempty"`
	Saved     bool            `json:"saved"`
}

type planStep struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Depth  int    `json:"depth"`
}

func (s *session) packPlan(ctx context.Context, c *cli.Context) error {
	if c.String("pack") == "" {
		return usageError("pack plan: --pack is required")
	}
	lp, err := s.resolvePack(ctx, c.String("pack"))
	if err != nil {
		return err
	}
	p, a := lp.pack, lp.artifact
	if err := admission.Visible(p, s.tenant); err != nil { // a folder's pack, not through LoadPack
		return err
	}
	var raw []byte
	inputsFile := "inputs"
	if f := c.String("inputs"); f != "" {
		inputsFile = f
		if raw, err = s.readFileArg(f, pack.MaxInputsSize); err != nil {
			return err
		}
	}
	inputs, err := p.ResolveInputs(inputsFile, raw)
	if err != nil {
		return err
	}
	// The plan is streamed: its map and loop iterations are expanded
	// again for the hash and each walk of the steps, not held (a map
	// over 100,000 items held was ~1 KiB a step).
	pl, err := plan.BuildStreamed(p, a.Digest(), inputs)
	if err != nil {
		return err
	}
	secrets, err := s.resolveSecrets(ctx, pl.Secrets())
	if err != nil {
		return err
	}
	// The canonical JSON is never held whole: the hash, --out and --save
	// stream it (plan.WriteCanonical; --save into the cache, hashed as it
	// is written).
	var hash digest.Digest
	out := c.String("out")
	if out != "" {
		if err := s.prepareOutput(out); err != nil {
			return err
		}
		if hash, err = writePlan(out, pl); err != nil {
			return err
		}
	}
	if c.Bool("save") {
		st, err := s.openCache(ctx)
		if err != nil {
			return err
		}
		sp, err := plans.SaveStreamed(ctx, st, pl, plans.Meta{PackRef: p.ID(), Tenant: s.tenant, SavedAt: s.now(), PackSize: a.Manifest.Size})
		if err != nil {
			return err
		}
		if hash != "" && hash != sp.Hash {
			return fmt.Errorf("plan written to %s hashes to %s, saved as %s: %w", out, hash, sp.Hash, plan.ErrInvalid)
		}
		hash = sp.Hash
	}
	if hash == "" {
		if hash, err = pl.Hash(); err != nil {
			return err
		}
	}
	res := planResult{PlanHash: hash, Pack: pl.Pack(), Approvals: pl.Approvals(), Secrets: secrets, Steps: []planStep{}, Out: c.String("out"), Saved: c.Bool("save")}
	// A walk fails only where planning did (it expands the same
	// iterations again); the text form cannot return it, so it is kept.
	var walkErr error
	walk := func(fn func(planStep)) {
		if err := pl.Walk(func(st *plan.Step, depth int) {
			fn(planStep{ID: st.ID, Kind: st.Kind, Status: st.Status, Depth: depth})
		}); err != nil && walkErr == nil {
			walkErr = err
		}
	}
	if s.output == outputJSON {
		walk(func(st planStep) { res.Steps = append(res.Steps, st) })
		if walkErr != nil {
			return walkErr
		}
	}
	if err := s.emit(res, func(w io.Writer) { renderPlan(w, res, walk) }); err != nil {
		return err
	}
	return walkErr
}

// writePlan writes the canonical JSON of pl to file, atomically, and
// returns its hash, computed as it is written.
func writePlan(file string, pl *plan.Streamed) (digest.Digest, error) {
	f, err := safefile.Create(file, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Abort()
	d := digest.Canonical.Digester()
	if err := pl.WriteCanonical(io.MultiWriter(f, d.Hash())); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Commit(); err != nil {
		return "", err
	}
	return d.Digest(), nil
}

// renderPlan writes the text form of a plan; walk gives its steps, which
// the text form does not hold (r.Steps is for the JSON form).
func renderPlan(w io.Writer, r planResult, walk func(func(planStep))) {
	fmt.Fprintf(w, "plan hash: %s\n", r.PlanHash)
	fmt.Fprintf(w, "pack:      %s:%s (%s)\n", display.Line(r.Pack.Name), display.Line(r.Pack.Version), r.Pack.Digest)
	if r.Out != "" {
		fmt.Fprintf(w, "plan file: %s\n", display.Line(r.Out))
	}
	if r.Saved {
		fmt.Fprintf(w, "saved:     in the cache (stella pack plans show %s)\n", r.PlanHash.Encoded()[:12])
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\napprovals required: %d\n", len(r.Approvals))
	if len(r.Approvals) > 0 {
		fmt.Fprintln(tw, "  GATE\tAPPROVAL\tROLE\tMIN APPROVERS\tEXPIRES AFTER")
		for _, ap := range r.Approvals {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", display.Line(ap.Gate), display.Line(ap.Approval), display.Line(ap.Role), ap.MinApprovers, display.Line(fmt.Sprint(ap.ExpiresAfter)))
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nsecrets (values are never shown): %d\n", len(r.Secrets))
	if len(r.Secrets) > 0 {
		fmt.Fprintln(tw, "  NAME\tSOURCE\tREQUIRED\tSCOPE\tRESOLVES\tUSED BY")
		notes := map[string]bool{}
		for _, sec := range r.Secrets {
			used := orDash(strings.Join(sec.Steps, ","))
			fmt.Fprintf(tw, "  %s\t%s\t%t\t%s\t%s\t%s\n", display.Line(sec.Name), display.Line(sec.Source), sec.Required, display.Line(string(sec.Scope)), display.Line(string(sec.Resolution)), used)
			if sec.Note != "" {
				notes[sec.Note] = true
			}
		}
		tw.Flush()
		for n := range notes {
			fmt.Fprintf(w, "  note: %s\n", display.Line(n))
		}
	}
	rows := func(fn func(cells ...string)) {
		fn("  ID", "KIND", "STATUS")
		walk(func(st planStep) {
			fn("  "+strings.Repeat("  ", st.Depth)+display.Line(st.ID), display.Line(st.Kind), display.Line(st.Status))
		})
	}
	// The count leaves out the heading row.
	writeAligned(w, func(w io.Writer, n int) { fmt.Fprintf(w, "\nsteps: %d\n", n-1) }, rows)
}

// writeAligned writes rows of cells, all but the last padded to their
// column's widest cell plus two spaces, as text/tabwriter (minwidth 2,
// padding 2, spaces) writes cells ended by tabs — without holding the
// rows: a first pass over them measures the columns and counts the rows,
// for head (when not nil) to write what comes before them; a second
// writes them. Every row has as many cells as the first. Cells hold no
// tab, newline or tabwriter escape (display.Line escapes them).
func writeAligned(w io.Writer, head func(w io.Writer, rows int), rows func(fn func(cells ...string))) {
	var width []int
	n := 0
	rows(func(cells ...string) {
		n++
		if width == nil {
			width = make([]int, len(cells)-1)
		}
		for i := range width {
			width[i] = max(width[i], utf8.RuneCountInString(cells[i])+2)
		}
	})
	bw := bufio.NewWriter(w)
	if head != nil {
		head(bw, n)
	}
	rows(func(cells ...string) {
		for i := range width {
			bw.WriteString(cells[i])
			bw.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(cells[i])))
		}
		bw.WriteString(cells[len(cells)-1])
		bw.WriteByte('\n')
	})
	bw.Flush()
}

// validateBundle checks a bundle file and validates every pack in it.
func (s *session) validateBundle(ctx context.Context, file string) error {
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
	type result struct {
		Valid bool         `json:"valid"`
		Pack  *packSummary `json:"pack,omitempty"`
		Ref   string       `json:"ref"`
		Error string       `json:"error,omitempty"`
	}
	out := struct {
		Bundle string   `json:"bundle"`
		Valid  bool     `json:"valid"`
		Packs  []result `json:"packs"`
	}{Bundle: filepath.Base(file), Valid: true, Packs: []result{}}
	var firstErr error
	for _, e := range rep.Entries {
		if e.Err != nil {
			return e.Err
		}
		if e.Kind != artifact.KindPack {
			continue
		}
		res := result{Ref: e.Ref, Valid: true}
		p, a, err := admission.Rebuild(ctx, r, e.Descriptor)
		if err == nil && a.Digest() != e.Descriptor.Digest {
			err = fmt.Errorf("pack %s (%s) rebuilds to %s: the artifact is not what stella builds from its files: %w", e.Ref, e.Descriptor.Digest, a.Digest(), integrity.ErrDigestMismatch)
		}
		if err != nil {
			res.Valid, res.Error, out.Valid = false, err.Error(), false
			if firstErr == nil {
				firstErr = fmt.Errorf("pack %s in %s: %w", e.Ref, filepath.Base(file), err)
			}
		} else {
			sum := summarize(p, a)
			res.Pack = &sum
		}
		out.Packs = append(out.Packs, res)
	}
	if firstErr != nil {
		return firstErr
	}
	return s.emit(out, func(w io.Writer) {
		for _, pr := range out.Packs {
			fmt.Fprintf(w, "%s: valid pack %s:%s (%d steps, %d files, digest %s)\n", display.Line(out.Bundle), display.Line(pr.Pack.Name), display.Line(pr.Pack.Version), pr.Pack.Steps, pr.Pack.Files, pr.Pack.Digest)
		}
	})
}
