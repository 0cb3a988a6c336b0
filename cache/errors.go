package cache

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the cache. Content that is not what its descriptor says fails
// with the integrity package's sentinels (integrity.ErrDigestMismatch,
// integrity.ErrSizeMismatch, integrity.ErrInvalidDigest), with the blob named.
var (
	// ErrNotFound: a ref, artifact or blob is not in the cache.
	ErrNotFound = errors.New("not found in cache")
	// ErrLocked: a lock of the cache could not be had within the lock
	// timeout. Returned wrapped in a *LockError naming the holder.
	ErrLocked = errors.New("cache is locked by another process")
	// ErrInvalidArtifact: an artifact to import is not a manifest, its
	// manifest cannot be parsed, its ref is malformed, or it has neither a
	// ref nor a subject (nothing would keep it in the cache).
	ErrInvalidArtifact = errors.New("invalid artifact")
	// ErrRefConflict: a ref already names another digest.
	ErrRefConflict = errors.New("ref already points to another digest")
	// ErrIndexCorrupt: the index contradicts itself (a record another
	// record needs is missing or unreadable); run verify.
	ErrIndexCorrupt = errors.New("cache index is inconsistent")
	// ErrIndexDamaged: the index file is not a database stella can open
	// (overwritten, truncated, or damaged on disk).
	ErrIndexDamaged = errors.New("cache index file is damaged")
	// ErrIndexVersion: the index was written by a newer stella.
	ErrIndexVersion = errors.New("cache index version not supported")
)

// Holder describes the process that took an exclusive lock of the cache,
// as it wrote itself down in the lock's side file.
type Holder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

// LockError reports a lock that could not be had in time. It unwraps to
// ErrLocked. Holder names the holder: the exclusive one, or the oldest of
// the processes holding the gc lock shared (Others counts the rest). It is
// nil when no running holder wrote itself down (a side file unreadable, or
// left by a process that is gone).
type LockError struct {
	Lock    string // "index" (index.db) or "gc" (gc.lock)
	Path    string
	Timeout time.Duration
	Holder  *Holder
	Others  int
}

func (e *LockError) Error() string {
	who := "another stella process"
	if e.Holder != nil {
		who = fmt.Sprintf("pid %d (%s) since %s", e.Holder.PID, e.Holder.Command,
			e.Holder.Since.UTC().Format(time.RFC3339))
	}
	switch {
	case e.Others == 1:
		who += " and 1 other process"
	case e.Others > 1:
		who += fmt.Sprintf(" and %d other processes", e.Others)
	}
	return fmt.Sprintf("cache %s lock %s held by %s; gave up after %s: %v",
		e.Lock, e.Path, who, e.Timeout, ErrLocked)
}

func (e *LockError) Unwrap() error { return ErrLocked }
