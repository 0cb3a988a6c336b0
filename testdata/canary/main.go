// Command canary is a pack step that leaks its secrets in every way the
// secret-canary test (cmd/stella canary_test.go) scans for: raw, split
// across writes with pauses, base64 and base64url at each alignment with
// and without padding, URL-escaped, JSON-escaped, line by line for a
// multi-line value, in a step output, in a file the pack names in
// spec.outputs, and on stderr before failing. Built by that test only.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	fail := len(os.Args) > 1 && os.Args[1] == "fail"
	for _, kv := range os.Environ() {
		k, path, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "STELLA_SECRET_") || !strings.HasSuffix(k, "_FILE") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "canary:", err)
			os.Exit(2)
		}
		leak(string(b), fail)
	}
	if v := os.Getenv("CANARY_ENV"); v != "" {
		leak(v, fail)
	}
	if fail {
		os.Exit(1)
	}
}

func leak(v string, fail bool) {
	out := os.Stdout
	if fail {
		out = os.Stderr
	}
	// Raw, split across writes with pauses between them.
	for i := 0; i < len(v); i += 3 {
		fmt.Fprint(out, v[i:min(i+3, len(v))])
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintln(out)
	// Each line of a multi-line value, on its own.
	for _, l := range strings.Split(v, "\n") {
		fmt.Fprintf(out, "line: %s\n", l)
	}
	// Encodings, each embedded in other text.
	for pad := 0; pad < 3; pad++ {
		blob := strings.Repeat("x", pad) + v + "tail"
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			fmt.Fprintf(out, "b64: %s\n", enc.EncodeToString([]byte(blob)))
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		fmt.Fprintf(out, "alone: %s\n", enc.EncodeToString([]byte(v)))
	}
	fmt.Fprintf(out, "https://x.example/?token=%s&path=/%s\n", url.QueryEscape(v), url.PathEscape(v))
	j, _ := json.Marshal(map[string]string{"password": v})
	fmt.Fprintf(out, "json: %s\n", j)
	// A flood: 4 MiB in one write, the value and an encoding every 4,093
	// bytes, so that the runner reads it in full chunks (and writes them
	// out behind its reads) and some fall across each chunk's end.
	flood := make([]byte, 0, 4<<20+8<<10)
	enc := base64.StdEncoding.EncodeToString([]byte(v))
	for i := 0; len(flood) < 4<<20; i++ {
		gap := 4093 - len(v) - len(enc)
		flood = append(flood, strings.Repeat(string(rune('a'+i%26)), max(gap, 1))...)
		flood = append(flood, v...)
		flood = append(flood, enc...)
	}
	flood = append(flood, '\n')
	_, _ = out.Write(flood)
	// In a step output and in the file the pack names in spec.outputs.
	if f, err := os.OpenFile(os.Getenv("STELLA_OUTPUT"), os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, "leaked=%s\n", strings.ReplaceAll(v, "\n", " "))
		f.Close()
	}
	if err := os.MkdirAll("out", 0o700); err == nil {
		f, _ := os.OpenFile(filepath.Join("out", "report.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		fmt.Fprintf(f, "report: %s\n", v)
		f.Close()
	}
}
