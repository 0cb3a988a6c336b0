package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"stellaops.io/stella/display"
)

// TestVersion: `stella version` and `stella --version` print the same;
// JSON has the version and the Go version and platform of this binary.
func TestVersion(t *testing.T) {
	home := t.TempDir()
	r := stella(t, home, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "stella "+version+"\n") || !strings.Contains(r.stdout, "go:          "+runtime.Version()) {
		t.Fatalf("version: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if flag := stella(t, home, nil, "--version"); flag.code != 0 || flag.stdout != r.stdout {
		t.Errorf("--version printed %q, version %q", flag.stdout, r.stdout)
	}
	j := stella(t, home, nil, "version", "--output", "json")
	var b buildInfo
	if err := json.Unmarshal([]byte(j.stdout), &b); err != nil || j.code != 0 {
		t.Fatalf("version --output json: %d %v %q", j.code, err, j.stdout)
	}
	if b.Version != version || b.Go != runtime.Version() || b.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("version JSON %+v", b)
	}
	if r := stella(t, home, nil, "version", "extra"); r.code != 1 || !strings.Contains(r.stderr, "ERR_PACK_USAGE") {
		t.Errorf("version with an argument: %d %s", r.code, r.stderr)
	}
}

// TestShellQuote: argv shown to an approver reads back as the same words
// (display.Argv, which display tests further).
func TestShellQuote(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"sh", "scripts/patch.sh", "web-1.prod:22"}, "sh scripts/patch.sh web-1.prod:22"},
		{[]string{"sh", "-c", "rm -rf $HOME; echo 'x'"}, `sh -c 'rm -rf $HOME; echo '\''x'\'''`},
		{[]string{"echo", "", "a b"}, "echo '' 'a b'"},
	} {
		if got := display.Argv(c.argv); got != c.want {
			t.Errorf("%q: %s, want %s", c.argv, got, c.want)
		}
	}
}
