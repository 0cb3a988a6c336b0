package bundle

import (
	"context"
	"errors"
	"testing"

	"stellaops.io/stella/integrity"
)

func TestVerifyCompressed(t *testing.T) {
	ctx := context.Background()
	cases := map[string]error{
		"../testdata/bundles/valid.stella.tar":               nil,
		"../testdata/bundles/corrupt/zstd-bomb.tar":          ErrDecompressionLimit,
		"../testdata/bundles/corrupt/zstd-no-annotation.tar": integrity.ErrInvalidManifest,
		"../testdata/bundles/corrupt/zstd-wrong-digest.tar":  integrity.ErrDigestMismatch,
	}
	for path, want := range cases {
		// The zstd vectors hold foreign layers: only AllowAnyMediaType
		// opens them (a strict open refuses them, see TestCorruptVectors).
		r, err := Open(ctx, path, OpenOptions{AllowAnyMediaType: true})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		err = r.VerifyCompressed(ctx, 0)
		r.Close()
		if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%s: want %v, got %v", path, want, err)
		}
	}
}
