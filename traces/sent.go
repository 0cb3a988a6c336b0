package traces

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"stellaops.io/stella/internal/safefile"
)

// SentFile is the name, in a run's folder, of the list of its spans a
// collector took: one span id a line.
const SentFile = "traces.sent"

// ReadSent returns the span ids recorded as sent in the run folder dir
// (none when the file is missing).
func ReadSent(dir string) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, SentFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	sent := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			sent[id] = true
		}
	}
	return sent, sc.Err()
}

// RecordSent adds ids to the run folder dir's sent list, replacing the
// file whole (temp file, fsync, rename), so a crash leaves the old list or
// the new one: a span recorded is one the collector took; a span taken but
// not recorded is sent again, as the same span.
func RecordSent(dir string, ids map[string]bool) error {
	sent, err := ReadSent(dir)
	if err != nil {
		return err
	}
	added := false
	for id, ok := range ids {
		if ok && !sent[id] {
			sent[id], added = true, true
		}
	}
	if !added {
		return nil
	}
	var buf bytes.Buffer
	for _, id := range slices.Sorted(maps.Keys(sent)) {
		buf.WriteString(id + "\n")
	}
	return safefile.WriteBytes(filepath.Join(dir, SentFile), buf.Bytes(), 0o600)
}

// Pending returns the spans whose ids are not in sent, in their order.
func Pending(spans []Span, sent map[string]bool) []Span {
	var out []Span
	for _, s := range spans {
		if !sent[s.SpanID] {
			out = append(out, s)
		}
	}
	return out
}
