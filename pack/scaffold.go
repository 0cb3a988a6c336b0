package pack

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"stellaops.io/stella/internal/safefile"
)

//go:embed all:scaffold
var scaffoldFS embed.FS

// Scaffold writes a new pack named name into dir, which must not exist yet.
// The result validates and plans as is. It returns the files written.
func Scaffold(dir, name string) ([]string, error) {
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("pack name %q: expected lowercase letters, digits and '-', at most 63 characters: %w", name, ErrManifestInvalid)
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("%s: %w", dir, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var written []string
	err := fs.WalkDir(scaffoldFS, "scaffold", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := scaffoldFS.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "scaffold/")
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(rel, ".sh") {
			mode = 0o755
		}
		out := filepath.Join(dir, filepath.FromSlash(rel))
		if err := safefile.WriteBytes(out, []byte(strings.ReplaceAll(string(b), "{{NAME}}", name)), mode); err != nil {
			return err
		}
		written = append(written, rel)
		return nil
	})
	return written, err
}
