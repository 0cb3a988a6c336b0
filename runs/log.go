package runs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"stellaops.io/stella/run"
)

// FlushEvery bounds how long a written log line waits in memory before it
// reaches the run's log file (and `stella pack runs logs --follow`).
const FlushEvery = 100 * time.Millisecond

// inlineMax is the longest record text kept inside the NDJSON log; a
// step's output record beyond it goes to the data file as it is.
const inlineMax = 1 << 10

// DataPath is the run's log data file: the raw (masked) text of long
// records of the log, which refer to it by offset and length.
func (s *Store) DataPath(id string) string { return filepath.Join(s.Folder(id), "log.data") }

// Log is a run's log being written: NDJSON records in LogPath, and the
// text of long step output records raw in DataPath, both appended through
// buffers written every FlushEvery, when full, and on Close — the text
// always before the records that refer to it. A step printing at full
// speed costs no escaping and no system call per record.
type Log struct {
	mu     sync.Mutex
	f      *os.File
	data   *os.File
	offset int64  // size of the data file, with what is pending
	text   []byte // data-file bytes not written yet
	index  []byte // NDJSON records not written yet
	err    error
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	cerr   error
}

// Buffer bounds: past either, pending bytes are written at once.
const (
	maxPendingText  = 1 << 20
	maxPendingIndex = 256 << 10
)

// OpenLog opens the log of run id for appending.
func (s *Store) OpenLog(id string) (*Log, error) {
	data, err := os.OpenFile(s.DataPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := data.Stat()
	if err != nil {
		data.Close()
		return nil, err
	}
	f, err := os.OpenFile(s.LogPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		data.Close()
		return nil, err
	}
	l := &Log{f: f, data: data, offset: fi.Size(), stop: make(chan struct{}), done: make(chan struct{})}
	go l.flusher()
	return l, nil
}

func (l *Log) flusher() {
	defer close(l.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.Flush()
		}
	}
}

// Write appends one record. The first error is kept and returned by Flush
// and Close; later records are dropped.
func (l *Log) Write(line run.Line) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if len(line.Msg) > inlineMax && line.Stream != "stella" {
		l.text = append(l.text, line.Msg...)
		line.Data = &run.DataRef{Offset: l.offset, Length: int64(len(line.Msg))}
		line.Msg = ""
		l.offset += line.Data.Length
	}
	l.index = append(line.AppendJSON(l.index), '\n')
	if len(l.text) >= maxPendingText || len(l.index) >= maxPendingIndex {
		l.flushLocked()
	}
}

// flushLocked writes what is pending: the text first, so a reader never
// finds a record whose text is not there yet.
func (l *Log) flushLocked() {
	if l.err != nil {
		return
	}
	if len(l.text) > 0 {
		if _, l.err = l.data.Write(l.text); l.err != nil {
			return
		}
		l.text = l.text[:0]
	}
	if len(l.index) > 0 {
		if _, l.err = l.f.Write(l.index); l.err != nil {
			return
		}
		l.index = l.index[:0]
	}
}

// Flush writes what is pending to the files.
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	return l.err
}

// Close flushes, syncs and closes the log; closing again returns the
// first Close's result.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		err := l.Flush()
		for _, f := range []*os.File{l.data, l.f} {
			if serr := f.Sync(); err == nil {
				err = serr
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		l.cerr = err
	})
	return l.cerr
}

// LogData reads the text of stored log records kept in a run's data file.
type LogData struct {
	path string
	f    *os.File
}

// LogData returns the reader of run id's log data; Close it when done.
func (s *Store) LogData(id string) *LogData { return &LogData{path: s.DataPath(id)} }

// Fill puts the text of a record that refers to the data file into its
// Msg; other records are left as they are.
func (d *LogData) Fill(l *run.Line) error {
	if l.Data == nil {
		return nil
	}
	if l.Data.Offset < 0 || l.Data.Length < 0 || l.Data.Length > 64<<20 {
		return fmt.Errorf("log data %s: record at %d+%d: %w", d.path, l.Data.Offset, l.Data.Length, ErrCorrupt)
	}
	if d.f == nil {
		f, err := os.Open(d.path)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("log data %s is missing: %w", d.path, ErrCorrupt)
		}
		if err != nil {
			return err
		}
		d.f = f
	}
	b := make([]byte, l.Data.Length)
	if _, err := d.f.ReadAt(b, l.Data.Offset); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("log data %s ends before %d+%d: %w", d.path, l.Data.Offset, l.Data.Length, ErrCorrupt)
		}
		return err
	}
	l.Msg, l.Data = string(b), nil
	return nil
}

// Close closes the data file.
func (d *LogData) Close() error {
	if d.f == nil {
		return nil
	}
	return d.f.Close()
}
