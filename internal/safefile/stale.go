package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StaleAfter is how long a temp file must have gone unwritten to be stale
// even though a process with the pid in its name runs: that pid may have
// been reused since, or be another machine's (a medium moved after a power
// loss). A live writer writes far more often than this.
const StaleAfter = 10 * time.Minute

// Leftover is a temp file a writer left behind when it was killed.
type Leftover struct {
	Path    string
	Size    int64
	ModTime time.Time
	// PID is the writer's pid as its name says, 0 when it names none
	// (older stella versions).
	PID int
}

// Stale lists the temp files in dir (not below) that no running writer
// owns, sorted by name: files named with TempPrefix that nobody holds
// locked, and whose writer's pid is gone or that went unwritten for
// StaleAfter. A pending write (File) is never listed, nor a temp file this
// user may not open (another user's). It removes nothing.
func Stale(dir string) ([]Leftover, error) {
	return scan(dir, false)
}

// RemoveStale removes the temp files Stale lists and returns them. A file
// is checked and removed while this process holds its lock, so a writer
// cannot take it meanwhile (temp names are never reused anyway).
func RemoveStale(dir string) ([]Leftover, error) {
	return scan(dir, true)
}

func scan(dir string, remove bool) ([]Leftover, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("temp files in %s: %w", dir, err)
	}
	var out []Leftover
	var errs []error
	now := time.Now()
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), TempPrefix) || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		l, ok, err := staleFile(path, e.Name(), now, remove)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b Leftover) int { return strings.Compare(a.Path, b.Path) })
	if remove && len(out) > 0 {
		if err := SyncDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// staleFile checks one temp file under its lock and removes it if asked.
func staleFile(path, name string, now time.Time, remove bool) (Leftover, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Leftover{}, false, nil // committed or aborted meanwhile
	}
	if errors.Is(err, fs.ErrPermission) {
		return Leftover{}, false, nil // another user's write: not ours to judge
	}
	if err != nil {
		return Leftover{}, false, fmt.Errorf("temp file %s: %w", path, err)
	}
	defer f.Close()
	if !tryLock(f) {
		return Leftover{}, false, nil // a writer holds it
	}
	fi, err := f.Stat()
	if err != nil {
		return Leftover{}, false, fmt.Errorf("temp file %s: %w", path, err)
	}
	l := Leftover{Path: path, Size: fi.Size(), ModTime: fi.ModTime(), PID: tempPID(name)}
	if l.PID > 0 && alive(l.PID) && now.Sub(l.ModTime) < StaleAfter {
		// Its writer may be between creating and locking it, or between
		// closing and renaming it.
		return Leftover{}, false, nil
	}
	if l.PID == 0 && now.Sub(l.ModTime) < StaleAfter {
		return Leftover{}, false, nil // unknown writer: only age tells
	}
	if remove {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Leftover{}, false, fmt.Errorf("remove stale temp file %s: %w", path, err)
		}
	}
	return l, true, nil
}

// tempPID is the writer's pid a temp name carries (TempPrefix…-<pid>-<digits>,
// the pid without leading zeros), 0 if it carries none.
func tempPID(name string) int {
	rest, ok := strings.CutPrefix(name, TempPrefix)
	if !ok {
		return 0
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 || !digits(rest[i+1:]) {
		return 0
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '-')
	if j < 0 || !digits(rest[j+1:]) || rest[j+1] == '0' {
		return 0
	}
	pid, err := strconv.Atoi(rest[j+1:])
	if err != nil {
		return 0
	}
	return pid
}

// digits reports whether s is one or more decimal digits.
func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
