package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// buildInfo is what `stella version` prints: the version given at build
// time (-ldflags "-X main.version=…", else the module's), and what the Go
// toolchain recorded in the binary (the commit and its time, whether the
// tree was modified, the Go version).
type buildInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commitTime,omitempty"`
	Modified   bool   `json:"modified"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

func currentBuild() buildInfo {
	b := buildInfo{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b buildInfo) render(w io.Writer) {
	fmt.Fprintf(w, "stella %s\n", b.Version)
	commit := b.Commit
	if commit == "" {
		commit = "unknown (built outside a git checkout)"
	} else if b.Modified {
		commit += " (modified tree)"
	}
	fmt.Fprintf(w, "commit:      %s\n", commit)
	if b.CommitTime != "" {
		fmt.Fprintf(w, "commit time: %s\n", b.CommitTime)
	}
	fmt.Fprintf(w, "go:          %s %s\n", b.Go, b.Platform)
}

// versionCommand is `stella version`; `stella --version` prints the same.
func (s *session) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print stella's version, commit and Go version",
		Description: `Prints the version, the commit the binary was built from (and whether the tree had
changes), that commit's time, and the Go version and platform, from what the build recorded
in the binary. --output json gives the same as one document.

Examples:
   stella version
   stella version --output json`,
		Action: action(func(_ context.Context, c *cli.Context) error {
			if err := argsExactly(c, 0, "no arguments"); err != nil {
				return err
			}
			b := currentBuild()
			return s.emit(b, b.render)
		}),
	}
}
