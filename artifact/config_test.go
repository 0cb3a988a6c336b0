package artifact

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/canonical"
	"stellaops.io/stella/pack"
)

// marshalConfig gives exactly canonical.Marshal's bytes: for plain files,
// for files it must hand to the generic path (non-ASCII, quotes,
// backslashes, control characters, sizes past 2^53), for no files, and for
// a config that carries the sentinel's own encoding elsewhere.
func TestMarshalConfigCanonical(t *testing.T) {
	base := PackConfig{APIVersion: pack.APIVersion, Name: "many", Version: "1.0.0", Description: "d <&> \u2028",
		Tags: []string{"b", "a"}, License: "MIT",
		Inputs:    []pack.Input{{Name: "files", Type: "array", Default: []any{map[string]any{"files": []any{}, "path": "x"}}}},
		Approvals: []pack.Approval{{ID: "files", Role: "approver"}}}
	file := func(path string, size int64) PackFile {
		return PackFile{Path: path, Size: size, Digest: digest.FromString(path), Mode: "0644"}
	}
	var many []PackFile
	for i := range 1000 {
		many = append(many, file(fmt.Sprintf("d%03d/f%05d.bin", i/100, i), int64(i*37)))
	}
	sentinelInput := base
	sentinelInput.Inputs = []pack.Input{{Name: "x", Type: "array", Default: []any{map[string]any{"digest": "", "mode": "", "path": filesSentinel, "size": 0}}}}
	tests := []struct {
		name  string
		cfg   PackConfig
		files []PackFile
		fast  bool // appendFiles takes the files
	}{
		{"plain", base, many, true},
		{"one file", base, []PackFile{file("pack.yaml", 12)}, true},
		{"no files", base, []PackFile{}, true},
		{"nil files", base, nil, false},
		{"non-ASCII path", base, []PackFile{file("données/é.txt", 1)}, false},
		{"quote in path", base, []PackFile{file(`a"b`, 1)}, false},
		{"backslash in path", base, []PackFile{file(`a\b`, 1)}, false},
		{"control character", base, []PackFile{file("a\tb", 1)}, false},
		{"size past 2^53", base, []PackFile{file("big", 1<<53+1)}, false},
		{"size at 2^53", base, []PackFile{file("big", 1<<53)}, true},
		{"sentinel elsewhere", sentinelInput, many, true}, // files plain; the count sends it to the generic path
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Files = tt.files
			want, err := canonical.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := marshalConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshalConfig:\n%s\nwant canonical.Marshal:\n%s", got, want)
			}
			if _, ok := appendFiles(nil, tt.files); tt.files != nil && ok != tt.fast {
				t.Errorf("fast path taken = %v, want %v", ok, tt.fast)
			}
		})
	}
}
