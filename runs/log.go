package runs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
// text of long step output records raw in DataPath.
//
// The text of a record always reaches the data file before the record
// reaches the log file, so a reader never finds a record whose text is not
// there yet. Text is written by Write itself, in order: the text of a
// long record (a step printing at full speed gives one of up to a read of
// its pipe per write) straight from the caller's memory, in one system
// call, with no copy; shorter texts are gathered and written together.
// Records are gathered in memory and handed, a batch at a time (every
// FlushEvery, when a batch is full, and on Close), to a writer goroutine
// that appends them to the log file. A step printing at full speed costs
// no escaping of its bytes, no copy of them in the runner beyond the read
// of its pipe and the masking, and a system call per read of its pipe.
type Log struct {
	mu     sync.Mutex
	offset int64  // size of the data file, with text
	text   []byte // data-file bytes not written yet (shorter texts)
	index  []byte // NDJSON records of the batch being gathered

	f, data *os.File
	batches chan logBatch // to the writer
	free    chan []byte   // written batches, for their buffers
	werr    atomic.Pointer[error]

	closed bool // under mu
	stop   chan struct{}
	done   chan struct{} // the flusher has stopped
	once   sync.Once
	cerr   error
}

// logBatch is records whose text is written, with ack closed once they
// are written too (when not nil).
type logBatch struct {
	index []byte
	ack   chan struct{}
}

// Batch bounds: past either, what is gathered is written (text) or goes
// to the writer (records). A record's text of directText bytes or more is
// written at once rather than gathered.
const (
	maxPendingText  = 256 << 10
	maxPendingIndex = 256 << 10
	directText      = 32 << 10
)

// align is the alignment that long texts keep in the data file: a cache
// line.
const align = 64

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
	l := &Log{f: f, data: data, offset: fi.Size(), stop: make(chan struct{}), done: make(chan struct{}),
		batches: make(chan logBatch, 1), free: make(chan []byte, 2)}
	go l.writer()
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
			l.mu.Lock()
			l.handOff(nil)
			l.mu.Unlock()
		}
	}
}

// writer appends each batch of records to the log file until the batches
// end; after the first error it only acknowledges them.
func (l *Log) writer() {
	for b := range l.batches {
		if l.failed() == nil {
			if _, err := l.f.Write(b.index); err != nil {
				l.fail(err)
			}
		}
		if b.ack != nil {
			close(b.ack)
		}
		select {
		case l.free <- b.index[:0]:
		default:
		}
	}
}

func (l *Log) failed() error {
	if e := l.werr.Load(); e != nil {
		return *e
	}
	return nil
}

// fail keeps err unless an error is kept already.
func (l *Log) fail(err error) { l.werr.CompareAndSwap(nil, &err) }

// Write appends one record. The first error is kept and returned by Flush
// and Close; later records, and records written after Close, are dropped.
// Write may write the record's text to the data file, and wait for the
// writer when it is two batches of records behind.
func (l *Log) Write(line run.Line) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.failed() != nil {
		return
	}
	if len(line.Msg) > inlineMax && line.Stream != "stella" {
		direct := len(line.Msg) >= directText
		if direct {
			// The kernel copies into the page cache at half speed when
			// the text's address and its place in the file are not
			// aligned alike (measured: 256 MiB from an aligned buffer to
			// a file offset of 3 took 2.1 times as long as to offset 0):
			// up to align-1 filler bytes, which no record refers to, put
			// the text at an offset congruent to its address.
			pad := (int64(uintptr(unsafe.Pointer(unsafe.StringData(line.Msg)))) - l.offset) & (align - 1)
			for range pad {
				l.text = append(l.text, '\n')
			}
			l.offset += pad
		}
		line.Data = &run.DataRef{Offset: l.offset, Length: int64(len(line.Msg))}
		l.offset += line.Data.Length
		if !direct {
			l.text = append(l.text, line.Msg...)
			if len(l.text) >= maxPendingText && !l.writeText("") {
				return
			}
		} else if !l.writeText(line.Msg) {
			return
		}
		line.Msg = ""
	}
	l.index = append(line.AppendJSON(l.index), '\n')
	if len(l.index) >= maxPendingIndex {
		l.handOff(nil)
	}
}

// writeText writes the gathered text, then more, to the data file, and
// reports whether both were written (an error is kept). l.mu is held.
func (l *Log) writeText(more string) bool {
	if len(l.text) > 0 {
		_, err := l.data.Write(l.text)
		l.text = l.text[:0]
		if err != nil {
			l.fail(err)
			return false
		}
	}
	if len(more) > 0 {
		if _, err := l.data.WriteString(more); err != nil {
			l.fail(err)
			return false
		}
	}
	return true
}

// handOff writes the gathered text and sends the records gathered so far
// (with ack, even when empty, if not nil) to the writer, and starts a new
// batch. l.mu is held.
func (l *Log) handOff(ack chan struct{}) {
	l.writeText("")
	if len(l.index) == 0 && ack == nil {
		return
	}
	l.batches <- logBatch{index: l.index, ack: ack}
	select {
	case b := <-l.free:
		l.index = b
	default:
		l.index = nil
	}
}

// Flush writes what is pending to the files and waits until it is.
func (l *Log) Flush() error { return l.flush(false) }

// flush hands the batch gathered over with an ack and waits for it; when
// last, no batch follows it (Write drops its records).
func (l *Log) flush(last bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.failed()
	}
	l.closed = last
	ack := make(chan struct{})
	l.handOff(ack)
	l.mu.Unlock()
	<-ack
	return l.failed()
}

// Close flushes, syncs and closes the log; closing again returns the
// first Close's result.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		err := l.flush(true)
		close(l.batches)
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

// LogData reads the text of stored log records kept in a run's data file
// (texts may be separated by a few filler bytes that no record refers to).
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

// ReadLog calls fn with each complete record of run id's log, in order,
// with the text of long records filled in from the data file (Fill). A
// last record cut short (a runner still writing, or killed mid-write) is
// not passed; any other undecodable record is ErrCorrupt. A run without a
// log yet has no records.
func (s *Store) ReadLog(id string, fn func(run.Line) error) error {
	b, err := os.ReadFile(s.LogPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	data := s.LogData(id)
	defer data.Close()
	n := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil // cut short
		}
		line := b[:i]
		b = b[i+1:]
		n++
		var l run.Line
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("log of run %s, line %d: %w: %v", id, n, ErrCorrupt, err)
		}
		if err := data.Fill(&l); err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}
