//go:build !linux

package pack

import (
	"io/fs"
	"os"
)

func openDir(dir string) fs.FS { return os.DirFS(dir) }
