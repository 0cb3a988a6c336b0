package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"stellaops.io/stella/internal/safefile"
)

// journal is a compaction under way: the generation of the new spool and
// the cursors of every hook in it.
type journal struct {
	Generation int               `json:"generation"`
	Cursors    map[string]cursor `json:"cursors"`
}

// Compact rewrites the spool with only the events some configured hook has
// not passed or that are newer than Keep, whatever its size. It waits for
// both of the spool's locks until ctx ends.
func (s *Spool) Compact(ctx context.Context) error {
	a, err := s.lock(ctx, appendLock)
	if err != nil {
		return err
	}
	defer a.Unlock()
	d, err := s.lock(ctx, deliverLock)
	if err != nil {
		return err
	}
	defer d.Unlock()
	return s.compact()
}

// step reports a finished step of a compaction to the crash hook of tests.
func (s *Spool) step(name string) error {
	if s.crash != nil {
		return s.crash(name)
	}
	return nil
}

// spoolLine is one complete line of the spool and where it starts.
type spoolLine struct {
	start int64
	raw   []byte
	event Event
	ok    bool // an event (not the header, not garbage)
}

// compact does Compact; the caller holds both locks.
func (s *Spool) compact() error {
	if err := s.recover(); err != nil {
		return err
	}
	b, err := os.ReadFile(s.SpoolPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	gen, err := s.generation()
	if err != nil {
		return err
	}
	var lines []spoolLine
	var off int64
	r := bufio.NewReader(bytes.NewReader(b))
	for {
		raw, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // a line cut short is dropped: it was never an event
		}
		if err != nil {
			return err
		}
		e, ok := parseLine(raw)
		lines = append(lines, spoolLine{start: off, raw: raw, event: e, ok: ok})
		off += int64(len(raw))
	}
	end := off

	names, err := s.cursorNames()
	if err != nil {
		return err
	}
	cursors := map[string]cursor{}
	for _, n := range names {
		c, err := s.cursor(n)
		if err != nil {
			return err
		}
		if c.Generation != gen {
			return fmt.Errorf("notification cursor %s: of spool generation %d, the spool is of %d (remove it to start the hook at the oldest event kept)", s.cursorPath(n), c.Generation, gen)
		}
		cursors[n] = c
	}
	// A configured hook without a cursor has passed nothing.
	held := map[string]int64{}
	for _, h := range s.opts.Hooks {
		held[h.Name] = cursors[h.Name].Offset
	}

	horizon := s.opts.Now().Add(-s.opts.Keep)
	keep := func(l spoolLine) bool {
		if !l.ok {
			return false
		}
		if !l.event.Time.Before(horizon) {
			return true
		}
		for _, h := range s.opts.Hooks {
			if held[h.Name] <= l.start && h.wants(l.event.Type) {
				return true
			}
		}
		return false
	}

	next := gen + 1
	var out bytes.Buffer
	hb, err := json.Marshal(header{Generation: &next})
	if err != nil {
		return err
	}
	out.Write(hb)
	out.WriteByte('\n')
	dropped := false
	// moved[i] is where the first kept line at or after lines[i] starts
	// in the new spool.
	moved := make([]int64, len(lines)+1)
	kept := make([]bool, len(lines))
	for i, l := range lines {
		moved[i] = int64(out.Len())
		if keep(l) {
			kept[i] = true
			out.Write(l.raw)
			continue
		}
		if l.ok {
			dropped = true
		}
	}
	moved[len(lines)] = int64(out.Len())
	if !dropped {
		return nil // nothing to gain
	}

	j := journal{Generation: next, Cursors: map[string]cursor{}}
	for n, c := range cursors {
		i := sort.Search(len(lines), func(i int) bool { return lines[i].start >= c.Offset })
		nc := cursor{Generation: next, Offset: moved[i]}
		if c.Offset > end {
			nc.Offset = moved[len(lines)]
		}
		if i < len(lines) && lines[i].start == c.Offset && kept[i] {
			nc.Attempts, nc.Error = c.Attempts, c.Error
		}
		j.Cursors[n] = nc
	}
	jb, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := safefile.WriteBytes(s.journalPath(), jb, 0o600); err != nil {
		return err
	}
	if err := s.step("journal"); err != nil {
		return err
	}
	if err := safefile.WriteBytes(s.SpoolPath(), out.Bytes(), 0o600); err != nil {
		return err
	}
	if err := s.step("spool"); err != nil {
		return err
	}
	return s.finish(j)
}

// finish writes the cursors of a compaction whose spool is in place, then
// removes its journal.
func (s *Spool) finish(j journal) error {
	names := make([]string, 0, len(j.Cursors))
	for n := range j.Cursors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := s.saveCursor(n, j.Cursors[n]); err != nil {
			return err
		}
		if err := s.step("cursor " + n); err != nil {
			return err
		}
	}
	if err := os.Remove(s.journalPath()); err != nil {
		return err
	}
	return safefile.SyncDir(s.dir)
}

// recover finishes or drops a compaction a crash interrupted; the caller
// holds the delivery lock, which every compaction holds throughout.
func (s *Spool) recover() error {
	b, err := os.ReadFile(s.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("notification compaction journal %s: %v", s.journalPath(), err)
	}
	gen, err := s.generation()
	if err != nil {
		return err
	}
	if gen != j.Generation {
		// The spool was not replaced: the old spool and cursors hold.
		if err := os.Remove(s.journalPath()); err != nil {
			return err
		}
		return safefile.SyncDir(s.dir)
	}
	return s.finish(j)
}

// cursorNames are the hooks that have a cursor, configured or not.
func (s *Spool) cursorNames() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "cursors"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && e.Type().IsRegular() && nameRE.MatchString(n) {
			out = append(out, n)
		}
	}
	return out, nil
}
