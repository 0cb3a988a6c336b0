package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"stellaops.io/stella/display"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// SSE event types. A log record is "log"; each timeline event is "step"
// (pack.run.step.*), "gate" (pack.run.gate.*) or "run" (the run's own:
// started, resumed, awaiting-approval, ended); "end" closes the stream
// once no runner drives the run and its state is no longer running.
const (
	EventLog  = "log"
	EventStep = "step"
	EventGate = "gate"
	EventRun  = "run"
	EventEnd  = "end"
)

// Cursor is a position in a run's log and timeline: the byte offset in
// log.ndjson past the last record read, and the number of timeline
// events read. It is an SSE event's id, "<Log>-<Timeline>".
type Cursor struct {
	Log      int64
	Timeline int
}

func (c Cursor) String() string { return strconv.FormatInt(c.Log, 10) + "-" + strconv.Itoa(c.Timeline) }

// ParseCursor reads an event id; "" is the start.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	l, t, ok := strings.Cut(s, "-")
	lo, err1 := strconv.ParseInt(l, 10, 64)
	ti, err2 := strconv.Atoi(t)
	if !ok || err1 != nil || err2 != nil || lo < 0 || ti < 0 {
		return Cursor{}, fmt.Errorf("event id %q is not <log offset>-<timeline count>", s)
	}
	return Cursor{Log: lo, Timeline: ti}, nil
}

// EndData is the data of the "end" event.
type EndData struct {
	RunID string `json:"runId"`
	State string `json:"state"`
}

// tail reads a run's log.ndjson from an offset as it grows.
type tail struct {
	path string
	data *runs.LogData
	f    *os.File
	off  int64  // offset of the first byte of buf
	buf  []byte // bytes read from off on, not yet a complete record
	eof  bool
}

// record is one stored log record: raw is its stored JSON when it holds
// its text (nil when the text had to be read from the data file).
type record struct {
	line run.Line
	raw  []byte
	end  int64
}

// recordHead is what a follower reads of a stored record.
type recordHead struct {
	Time   time.Time    `json:"time"`
	StepID string       `json:"stepId"`
	Data   *run.DataRef `json:"data"`
}

// quickHead reads a record's head without a JSON decoder when the
// record is as runs.Log writes it (run.Line.AppendJSON: time first, then
// runId, packId, tenant, stepId, stream, msg, data). Inside a JSON
// string a quote is always escaped, so `,"stepId":"` and `,"data":{`
// can only be the fields themselves. ok is false for a record with a
// data reference or of another shape: decode it.
func quickHead(raw []byte) (h recordHead, ok bool) {
	const prefix = `{"time":"`
	if !bytes.HasPrefix(raw, []byte(prefix)) || raw[len(raw)-1] != '}' || bytes.Contains(raw, []byte(`,"data":{`)) {
		return h, false
	}
	rest := raw[len(prefix):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return h, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:i]))
	if err != nil {
		return h, false
	}
	h.Time = t
	const step = `,"stepId":"`
	if j := bytes.Index(raw, []byte(step)); j >= 0 {
		s := raw[j+len(step):]
		k := bytes.IndexByte(s, '"')
		if k < 0 || bytes.IndexByte(s[:k], '\\') >= 0 {
			return h, false
		}
		h.StepID = string(s[:k])
	}
	return h, true
}

// readMax bounds what one read of a log takes in, so a follower of a
// large log interleaves its records with the timeline and sends them in
// pieces.
const readMax = 1 << 20

// read returns the complete records written since the last read.
func (t *tail) read() ([]record, error) {
	if t.f == nil {
		f, err := os.Open(t.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(t.off, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		t.f = f
	}
	n := len(t.buf)
	if cap(t.buf)-n < readMax {
		nb := make([]byte, n, n+readMax)
		copy(nb, t.buf)
		t.buf = nb
	}
	m, err := io.ReadFull(t.f, t.buf[n:n+readMax])
	t.buf = t.buf[:n+m]
	t.eof = m < readMax
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	var out []record
	b := t.buf
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		raw := b[:i]
		b = b[i+1:]
		t.off += int64(i + 1)
		// Only what ordering and filtering need is decoded; the record
		// is sent as stored unless its text is in the data file.
		h, ok := quickHead(raw)
		if !ok && json.Unmarshal(raw, &h) != nil {
			continue // a record no reader can decode (runs logs skips it too)
		}
		l := run.Line{Time: h.Time, StepID: h.StepID}
		if h.Data != nil {
			if json.Unmarshal(raw, &l) != nil {
				continue
			}
			if err := t.data.Fill(&l); err != nil {
				return out, err
			}
			raw = nil
		}
		out = append(out, record{line: l, raw: raw, end: t.off})
	}
	// What is left is a record being written: keep it for the next read,
	// in a buffer of its own (the records returned point into this one).
	rest := make([]byte, len(b), len(b)+readMax)
	copy(rest, b)
	t.buf = rest
	return out, nil
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
	}
	t.data.Close()
}

// checkOffset reports whether off is the start of a record of the log at
// path: 0, or just past a newline.
func checkOffset(path string, off int64) bool {
	if off == 0 {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off-1); err != nil {
		return false
	}
	return b[0] == '\n'
}

// sink receives what a follow reads, in order.
type sink interface {
	log(r record, c Cursor) error
	event(e run.Event, c Cursor) error
	end(rec *run.Record, c Cursor) error
	idle() error // nothing new this round
	flush() error
}

func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	rec, err := h.get(r)
	if err != nil {
		writeError(w, err)
		return
	}
	id := rec.ID
	sse := wantsSSE(r)
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("lastEventId") // for clients that cannot set the header
	}
	cur, err := ParseCursor(last)
	if err != nil || !checkOffset(h.o.Runs.LogPath(id), cur.Log) {
		if err == nil {
			err = fmt.Errorf("event id %q: %d is not the start of a record of the log of run %s", last, cur.Log, id)
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	step := r.URL.Query().Get("step")
	fl := newFlusher(w)
	var s sink
	follow := true
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(fl.bw, "retry: %d\n\n", h.o.Poll.Milliseconds()*10)
		s = &sseSink{f: fl, step: step, heartbeat: h.o.Heartbeat, last: time.Now(), display: r.URL.Query().Get("display") == "text"}
	} else {
		follow = r.URL.Query().Get("follow") == "true"
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		s = &ndjsonSink{f: fl, step: step}
	}
	if err := h.follow(r.Context(), id, cur, follow, s); err != nil && r.Context().Err() == nil {
		if ss, ok := s.(*sseSink); ok {
			b, _ := json.Marshal(map[string]string{"error": err.Error()})
			fmt.Fprintf(ss.f.bw, "event: error\ndata: %s\n\n", b)
		}
	}
	_ = fl.flush()
}

// follow reads run id's log and timeline from cur and hands them to s in
// time order, until the run stops (follow) or what is there now was read
// (not follow).
func (h *handler) follow(ctx context.Context, id string, cur Cursor, follow bool, s sink) error {
	rs := h.o.Runs
	t := &tail{path: rs.LogPath(id), data: rs.LogData(id), off: cur.Log}
	defer t.close()
	var rec *run.Record
	var jsize int64 = -1
	var jmod time.Time
	for {
		live := rs.Live(id)
		// The journal is replayed only when it changed.
		fi, err := os.Stat(rs.JournalPath(id))
		if rec == nil || err != nil || fi.Size() != jsize || !fi.ModTime().Equal(jmod) {
			if err == nil {
				jsize, jmod = fi.Size(), fi.ModTime()
			}
			if rec, err = rs.Get(ctx, id); err != nil {
				return err
			}
		}
		var evs []run.Event
		if follow && cur.Timeline < len(rec.Timeline) {
			evs = rec.Timeline[cur.Timeline:]
		}
		sent := len(evs) > 0
		for {
			recs, err := t.read()
			if err != nil {
				return err
			}
			sent = sent || len(recs) > 0
			// Timeline events go between the log records by time; those
			// later than every record read go once the log is read up.
			for len(recs) > 0 || (t.eof && len(evs) > 0) {
				if len(evs) > 0 && (len(recs) == 0 || evs[0].Time.Before(recs[0].line.Time)) {
					cur.Timeline++
					if err := s.event(evs[0], cur); err != nil {
						return err
					}
					evs = evs[1:]
					continue
				}
				cur.Log = recs[0].end
				if err := s.log(recs[0], cur); err != nil {
					return err
				}
				recs = recs[1:]
			}
			if t.eof {
				break
			}
			if err := s.flush(); err != nil {
				return err
			}
		}
		if !follow {
			return nil
		}
		// Live was read before the journal and the log: a runner that had
		// let go had written both in full.
		if !live && rec.State != run.Running {
			return s.end(rec, cur)
		}
		if !sent {
			if err := s.idle(); err != nil {
				return err
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
		if !wait(ctx, h.o.Poll) {
			return ctx.Err()
		}
	}
}

// EventType is the SSE event type of a timeline event.
func EventType(e run.Event) string {
	switch {
	case strings.HasPrefix(e.Type, "pack.run.step."):
		return EventStep
	case strings.HasPrefix(e.Type, "pack.run.gate."):
		return EventGate
	}
	return EventRun
}

type sseSink struct {
	f         *flusher
	step      string
	heartbeat time.Duration
	last      time.Time // last write
	scratch   []byte
	// display sends each log record's msg as package display renders
	// it for a terminal (?display=text, what the console asks for).
	display bool
}

func (s *sseSink) write(typ string, c Cursor, data []byte) error {
	b := s.scratch[:0]
	b = append(b, "id: "...)
	b = append(b, c.String()...)
	b = append(b, "\nevent: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	s.scratch = b
	s.last = time.Now()
	_, err := s.f.bw.Write(b)
	return err
}

func (s *sseSink) log(r record, c Cursor) error {
	if s.step != "" && r.line.StepID != s.step {
		// Not sent, but its position is: a reconnect resumes after it.
		return nil
	}
	data := r.raw
	if s.display {
		l := r.line
		if r.raw != nil {
			if err := json.Unmarshal(r.raw, &l); err != nil {
				return err
			}
		}
		l.Msg = display.Text(l.Msg)
		data = l.AppendJSON(nil)
	} else if data == nil {
		data = r.line.AppendJSON(nil)
	}
	return s.write(EventLog, c, data)
}

func (s *sseSink) event(e run.Event, c Cursor) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.write(EventType(e), c, b)
}

func (s *sseSink) end(rec *run.Record, c Cursor) error {
	b, err := json.Marshal(EndData{RunID: rec.ID, State: rec.State})
	if err != nil {
		return err
	}
	return s.write(EventEnd, c, b)
}

func (s *sseSink) idle() error {
	if time.Since(s.last) < s.heartbeat {
		return nil
	}
	s.last = time.Now()
	_, err := s.f.bw.WriteString(": keepalive\n\n")
	return err
}

func (s *sseSink) flush() error { return s.f.flush() }

type ndjsonSink struct {
	f    *flusher
	step string
}

func (s *ndjsonSink) log(r record, _ Cursor) error {
	if s.step != "" && r.line.StepID != s.step {
		return nil
	}
	var err error
	if r.raw != nil {
		_, err = s.f.bw.Write(r.raw)
	} else {
		_, err = s.f.bw.Write(r.line.AppendJSON(nil))
	}
	if err == nil {
		err = s.f.bw.WriteByte('\n')
	}
	return err
}

func (s *ndjsonSink) event(run.Event, Cursor) error { return nil }
func (s *ndjsonSink) end(*run.Record, Cursor) error { return nil }
func (s *ndjsonSink) idle() error                   { return nil }
func (s *ndjsonSink) flush() error                  { return s.f.flush() }
