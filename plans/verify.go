package plans

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
)

// Source names the problems of saved plans in a cache verify report.
const Source = "plans"

// Problems cache verify reports of a saved plan whose canonical bytes are
// a record file (see the package comment). A record that cannot be
// decoded is package approve's problem (approve.ProblemRecord).
const (
	ProblemFileMissing = "saved-plan-file-missing" // the record names a file that is not there
	ProblemFileDamaged = "saved-plan-file-damaged" // the file does not hash to the plan hash, or has another size, or cannot be read
)

// VerifyHook checks, when the cache is verified, that the record file of
// every saved plan is there and hashes to the plan hash with the size its
// record gives; a damaged file is otherwise found only when the plan is
// read (ErrCorrupt).
func VerifyHook() cache.VerifyHook {
	return cache.VerifyHook{Name: Source, Check: verifyFiles}
}

func verifyFiles(ctx context.Context, st *cache.Store) ([]cache.Problem, error) {
	type file struct {
		hash digest.Digest
		size int64
	}
	var files []file
	recs := st.Records(namespace)
	err := recs.View(ctx, func(tx cache.RecordTx) error {
		return tx.ForEach(bucket, nil, func(k, _ []byte) error {
			var r recordHead
			if _, err := getHead(tx, string(k), &r); err != nil {
				return nil // approve.VerifyHook reports it
			}
			if r.record.inFile() {
				files = append(files, file{digest.Digest(k), r.record.Size})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var out []cache.Problem
	for _, f := range files {
		object := "saved plan " + string(f.hash)
		rc, err := recs.OpenFile(ctx, bucket, f.hash, f.size)
		if errors.Is(err, cache.ErrNotFound) {
			out = append(out, cache.Problem{Severity: cache.SeverityError, Source: Source, Object: object,
				Problem: ProblemFileMissing, Expected: "its record file", Actual: "none"})
			continue
		}
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			out = append(out, cache.Problem{Severity: cache.SeverityError, Source: Source, Object: object,
				Problem: ProblemFileDamaged, Expected: "sha256 and size of the plan", Actual: err.Error()})
		}
	}
	return out, nil
}
