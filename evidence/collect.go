package evidence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plans"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// MaxOutputSize bounds one output file carried in evidence.
const MaxOutputSize = 256 << 20

// CollectOptions are what Collect cannot find in the cache.
type CollectOptions struct {
	Partial       bool
	StellaVersion string
	Sealed        bool
	Signer        *keys.Pair
}

// Collect gathers the Input of run id from the cache and the run's folder:
// the run record, its saved plan, the log (long records filled in), the
// files named by the plan's spec.outputs[].path in the work folder, the
// decisions accepted for the plan's gates and the approvals ledger. It
// reads no secret: output files are read only once the runner stopped and
// masked them.
func Collect(ctx context.Context, st *cache.Store, rs *runs.Store, id string, opts CollectOptions) (Input, error) {
	rec, err := rs.Get(ctx, id)
	if err != nil {
		return Input{}, err
	}
	in := Input{Record: rec, Live: rs.Live(id), Partial: opts.Partial, StellaVersion: opts.StellaVersion,
		Sealed: opts.Sealed, Signer: opts.Signer}
	sp, err := plans.Get(ctx, st, rec.PlanHash.String())
	if err != nil {
		return Input{}, fmt.Errorf("plan of run %s: %w", id, err)
	}
	in.Plan = sp.Canonical
	in.Pack = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: sp.Pack.Digest, Size: sp.PackSize}
	if in.Pack.Size <= 0 {
		// A plan saved without its pack's size: the pack in the cache says.
		a, err := st.Resolve(ctx, sp.Pack.Name+":"+sp.Pack.Version)
		if err != nil || a.Descriptor.Digest != sp.Pack.Digest {
			return Input{}, fmt.Errorf("pack %s:%s (%s) of run %s is not in this cache: %w", sp.Pack.Name, sp.Pack.Version, sp.Pack.Digest, id, cache.ErrNotFound)
		}
		in.Pack.Size = a.Descriptor.Size
	}
	if err := rs.ReadLog(id, func(l run.Line) error {
		in.Log = append(in.Log, l)
		return nil
	}); err != nil {
		return Input{}, err
	}
	// The runner masks output files in place when it stops: while it is
	// alive they may hold secret values, so partial evidence of a live run
	// carries none (each is listed as missing).
	if in.Live {
		for _, o := range sp.Plan.Outputs {
			if o.Path != "" {
				in.Outputs = append(in.Outputs, OutputFile{Name: o.Name, Path: o.Path, Missing: true})
			}
		}
	} else if in.Outputs, err = ReadOutputs(filepath.Join(rs.Folder(id), "work"), sp.Plan.Outputs); err != nil {
		return Input{}, err
	}
	for _, a := range Gates(sp.Plan, rec.Expansions) {
		ds, err := approve.Decisions(ctx, st, rec.Tenant, rec.PlanHash, a.Gate)
		if err != nil {
			return Input{}, err
		}
		in.Approvals = append(in.Approvals, ds...)
	}
	if in.Ledger, err = approve.Ledger(ctx, st); err != nil {
		return Input{}, err
	}
	return in, nil
}

// ReadOutputs reads the files the plan's spec.outputs[].path name from the
// work folder: regular files only, never through a symbolic link out of
// the folder (os.Root), at most MaxOutputSize bytes each. A file that is
// not there is Missing.
func ReadOutputs(work string, spec []pack.Output) ([]OutputFile, error) {
	var out []OutputFile
	var outs [][2]string
	for _, o := range spec {
		if o.Path != "" {
			outs = append(outs, [2]string{o.Name, o.Path})
		}
	}
	if len(outs) == 0 {
		return nil, nil
	}
	root, err := os.OpenRoot(work)
	if errors.Is(err, fs.ErrNotExist) {
		for _, o := range outs {
			out = append(out, OutputFile{Name: o[0], Path: o[1], Missing: true})
		}
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	for _, o := range outs {
		name, p := o[0], path.Clean(o[1])
		if !fs.ValidPath(p) || p == "." {
			return nil, fmt.Errorf("output %s: path %q: %w", name, o[1], ErrOutputInvalid)
		}
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, OutputFile{Name: name, Path: p, Missing: true})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("output %s: %w: %v", name, ErrOutputInvalid, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("output %s: %s is a %s: %w", name, p, fi.Mode().Type(), ErrOutputInvalid)
		}
		if fi.Size() > MaxOutputSize {
			return nil, fmt.Errorf("output %s: %s has %d bytes, evidence carries at most %d: %w", name, p, fi.Size(), MaxOutputSize, ErrOutputInvalid)
		}
		f, err := root.Open(p)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w: %v", name, ErrOutputInvalid, err)
		}
		b, err := io.ReadAll(io.LimitReader(f, MaxOutputSize+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		out = append(out, OutputFile{Name: name, Path: p, Data: b})
	}
	return out, nil
}
