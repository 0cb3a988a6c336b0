package runs

import (
	"bufio"
	"os"
	"sync"
	"time"

	"stellaops.io/stella/run"
)

// FlushEvery bounds how long a written log line waits in memory before it
// reaches the run's log file (and `stella pack runs logs --follow`).
const FlushEvery = 100 * time.Millisecond

// Log is a run's NDJSON log (LogPath) being written: one JSON object per
// line, appended through a buffer that is flushed every FlushEvery and on
// Close, so a step printing at full speed costs no system call per line.
type Log struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	buf  []byte
	err  error
	stop chan struct{}
	done chan struct{}
	once sync.Once
	cerr error
}

// OpenLog opens the log of run id for appending.
func (s *Store) OpenLog(id string) (*Log, error) {
	f, err := os.OpenFile(s.LogPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	l := &Log{f: f, w: bufio.NewWriterSize(f, 256<<10), stop: make(chan struct{}), done: make(chan struct{})}
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

// Write appends one line. The first error is kept and returned by Flush
// and Close; later lines are dropped.
func (l *Log) Write(line run.Line) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.buf = append(line.AppendJSON(l.buf[:0]), '\n')
	_, l.err = l.w.Write(l.buf)
}

// Flush writes what is buffered to the file.
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = l.w.Flush()
	}
	return l.err
}

// Close flushes, syncs and closes the log; closing again returns the
// first Close's result.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		err := l.Flush()
		if serr := l.f.Sync(); err == nil {
			err = serr
		}
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.cerr = err
	})
	return l.cerr
}
