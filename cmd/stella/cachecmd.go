package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/runs"
)

// errCacheDamaged: cache verify found problems.
var errCacheDamaged = fmt.Errorf("cache verification failed: %w", cache.ErrIndexCorrupt)

func (s *session) cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "check and maintain the local cache (<home>/packs)",
		Subcommands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "re-hash every blob and check the index; report what is wrong",
				Description: `Exit 0 only when nothing is wrong. Leftovers of interrupted imports are reported
as warnings (remove them with ` + "`stella cache gc`" + `).

Examples:
   stella cache verify
   stella --output json cache verify`,
				Action: action(s.cacheVerify),
			},
			{
				Name:  "gc",
				Usage: "remove blobs nothing references and leftovers of interrupted imports",
				Description: `Blobs a running import, export or push still uses are kept (and listed as held,
with the process that holds them); the next gc after it ends removes them. gc runs
beside imports in flight without waiting for them; it waits for a running cache verify
(at most the lock timeout).

Examples:
   stella cache gc --dry-run
   stella cache gc`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "dry-run", Usage: "only say what would be removed"},
				},
				Action: action(s.cacheGC),
			},
			{
				Name:   "du",
				Usage:  "show disk use by kind",
				Action: action(s.cacheDu),
			},
		},
	}
}

// cacheHooks are the checks other packages add to cache verify.
func (s *session) cacheHooks() []cache.VerifyHook {
	return []cache.VerifyHook{approve.VerifyHook(), plans.VerifyHook(), runs.VerifyHook(filepath.Join(s.home, "runs"))}
}

func (s *session) cacheVerify(ctx context.Context, _ *cli.Context) error {
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	rep, err := st.Verify(ctx, cache.VerifyOptions{Hooks: s.cacheHooks()})
	if err != nil {
		return err
	}
	if rep.Problems == nil {
		rep.Problems = []cache.Problem{}
	}
	errors := 0
	for _, p := range rep.Problems {
		if p.Severity == cache.SeverityError {
			errors++
		}
	}
	if err := s.emit(rep, func(w io.Writer) {
		fmt.Fprintf(w, "checked %s, %s, %s (%s)\n", counted(rep.Artifacts, "artifact"), counted(rep.Refs, "ref"), counted(rep.Blobs, "blob"), display.Bytes(rep.Bytes))
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  %s: %s: %s", p.Severity, display.Line(p.Object), display.Line(p.Problem))
			if p.Expected != "" || p.Actual != "" {
				fmt.Fprintf(w, " (expected %s, actual %s)", orDash(p.Expected), orDash(p.Actual))
			}
			fmt.Fprintln(w)
		}
		if rep.UnreferencedBlobs > 0 {
			fmt.Fprintf(w, "  %d unreferenced blobs (%s): `stella cache gc` removes them\n", rep.UnreferencedBlobs, display.Bytes(rep.UnreferencedBytes))
		}
		if errors == 0 {
			fmt.Fprintln(w, "cache is consistent")
		}
	}); err != nil {
		return err
	}
	if errors > 0 {
		return fmt.Errorf("%d problem(s) in %s: %w", errors, st.Root(), errCacheDamaged)
	}
	return nil
}

func (s *session) cacheGC(ctx context.Context, c *cli.Context) error {
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	res, err := st.GC(ctx, cache.GCOptions{DryRun: c.Bool("dry-run")})
	if err != nil {
		return err
	}
	out := struct {
		DryRun        bool            `json:"dryRun"`
		Removed       []digest.Digest `json:"removed"`
		Blobs         int             `json:"blobs"`
		Bytes         int64           `json:"bytes"`
		Leftovers     int             `json:"leftovers"`
		LeftoverBytes int64           `json:"leftoverBytes"`
		Kept          []digest.Digest `json:"kept"`
		Held          []digest.Digest `json:"held"`
		Holders       []cache.Holder  `json:"holders"`
	}{res.DryRun, res.Removed, res.Blobs, res.Bytes, res.Leftovers, res.LeftoverBytes, res.Kept, res.Held, res.Holders}
	for _, l := range []*[]digest.Digest{&out.Removed, &out.Kept, &out.Held} {
		if *l == nil {
			*l = []digest.Digest{}
		}
	}
	if out.Holders == nil {
		out.Holders = []cache.Holder{}
	}
	return s.emit(out, func(w io.Writer) {
		verb := "removed"
		if res.DryRun {
			verb = "would remove"
		}
		fmt.Fprintf(w, "%s %d blobs (%s) and %d leftovers (%s)\n", verb, res.Blobs, display.Bytes(res.Bytes), res.Leftovers, display.Bytes(res.LeftoverBytes))
		if len(res.Kept) > 0 {
			fmt.Fprintf(w, "kept %d unreachable blobs whose index records disagree: run `stella cache verify`\n", len(res.Kept))
		}
		if len(res.Held) > 0 {
			fmt.Fprintf(w, "kept %d unreachable blobs a running operation still reads; the next gc after it ends removes them\n", len(res.Held))
			for _, h := range res.Holders {
				fmt.Fprintf(w, "  held by pid %d (%s) since %s\n", h.PID, h.Command, h.Since.UTC().Format(time.RFC3339))
			}
		}
	})
}

func (s *session) cacheDu(ctx context.Context, _ *cli.Context) error {
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	u, err := st.Du(ctx)
	if err != nil {
		return err
	}
	return s.emit(u, func(w io.Writer) {
		fmt.Fprintf(w, "total: %d blobs, %s (index %s)\n", u.Blobs, display.Bytes(u.Bytes), display.Bytes(u.IndexBytes))
		kinds := make([]string, 0, len(u.ByKind))
		for k := range u.ByKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			ku := u.ByKind[k]
			fmt.Fprintf(w, "  %-18s %d artifacts, %d blobs, %s\n", display.Line(k), ku.Artifacts, ku.Blobs, display.Bytes(ku.Bytes))
		}
		fmt.Fprintf(w, "unreferenced: %d blobs (%s); leftovers: %d files (%s)\n", u.UnreferencedBlobs, display.Bytes(u.UnreferencedBytes), u.LeftoverFiles, display.Bytes(u.LeftoverBytes))
		fmt.Fprintf(w, "record files (saved plans): %d files (%s)\n", u.RecordFiles, display.Bytes(u.RecordBytes))
	})
}

// counted writes n and the noun, plural unless n is 1.
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
