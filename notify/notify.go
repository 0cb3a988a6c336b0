// Package notify keeps the notification spool of a stella home and
// delivers it to the site's hooks.
//
// Every event worth telling someone about (a run's pack.run.* timeline
// events, pack.approval.* decisions, pack.chaos.injected, the gate-wait
// alert) is appended to <home>/notify/spool.ndjson, one JSON object a line,
// synced before Append returns. An event carries an id unique to it (a
// run's events: the run id and the event's index in its timeline), and an
// id already in the spool is not appended again, so whoever sees an event
// may append it.
//
// Each hook (a command that reads the event as JSON on stdin, or a webhook
// that receives it as a POST) has a cursor: the spool offset up to which
// every event was delivered to it or given up on. Deliver walks each hook
// from its cursor, in order, under the spool's delivery lock, so across processes
// and retries a hook receives each event once. A failed delivery is retried
// with backoff (package backoff); past MaxAttempts, or when the hook may
// never be reached (a webhook host the sealed allowlist does not permit),
// the event goes to <home>/notify/dead-letter.ndjson with the hook, the
// attempts and the last error, and the hook moves on. The cursor is saved
// after each event, before the next is tried.
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
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"stellaops.io/stella/backoff"
	"stellaops.io/stella/internal/safefile"
)

var (
	// ErrHook: a hook is misconfigured (no name, neither or both of
	// command and url, a bad url or event pattern).
	ErrHook = errors.New("invalid notification hook")
	// ErrHostRefused: a webhook's host is not one the sealed allowlist
	// permits; it is never contacted.
	ErrHostRefused = errors.New("webhook host not allowed")
	// ErrDelivery: a hook did not take an event (the command exited
	// non-zero, the webhook answered other than 2xx, or could not be
	// reached).
	ErrDelivery = errors.New("notification not delivered")
)

// Event is one line of the spool: what hooks receive.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	RunID   string    `json:"runId"`
	PackID  string    `json:"packId"`
	Tenant  string    `json:"tenant"`
	StepID  string    `json:"stepId"`
	Gate    string    `json:"gate"`
	Message string    `json:"message"`
}

// DeadLetter is one line of the dead-letter spool.
type DeadLetter struct {
	Event    Event     `json:"event"`
	Hook     string    `json:"hook"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
	Time     time.Time `json:"time"`
}

// Hook is where events go: Command (argv, the event as JSON on stdin) or
// URL (an HTTP POST of the event as JSON), for the events whose type
// matches one of Events (path.Match patterns such as pack.run.*; none
// means every event).
type Hook struct {
	Name    string   `yaml:"name" json:"name"`
	Command []string `yaml:"command" json:"command,omitempty"`
	URL     string   `yaml:"url" json:"url,omitempty"`
	Events  []string `yaml:"events" json:"events,omitempty"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Check refuses a hook that could never deliver.
func (h Hook) Check() error {
	if !nameRE.MatchString(h.Name) {
		return fmt.Errorf("hook %q: a name of letters, digits, '.', '_' and '-' is required: %w", h.Name, ErrHook)
	}
	if (len(h.Command) == 0) == (h.URL == "") {
		return fmt.Errorf("hook %s: give exactly one of command and url: %w", h.Name, ErrHook)
	}
	if h.URL != "" {
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("hook %s: url %q is not an http(s) URL: %w", h.Name, h.URL, ErrHook)
		}
	}
	for _, p := range h.Events {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("hook %s: event pattern %q: %w", h.Name, p, ErrHook)
		}
	}
	return nil
}

func (h Hook) wants(typ string) bool {
	if len(h.Events) == 0 {
		return true
	}
	for _, p := range h.Events {
		if ok, _ := path.Match(p, typ); ok {
			return true
		}
	}
	return false
}

// Options are how a Spool delivers.
type Options struct {
	Hooks []Hook
	// MaxAttempts is how many times an event is tried on a hook before it
	// goes to the dead letters (default 5).
	MaxAttempts int
	// Backoff is the wait between attempts (default 1s doubling to 30s,
	// ±10%).
	Backoff backoff.Policy
	// Timeout bounds one delivery (default 10s).
	Timeout time.Duration
	// Allow is asked about a webhook's host (host or host:port as in its
	// URL) before any connection; an error refuses it for good (the event
	// is dead-lettered at once). Nil allows every host.
	Allow func(host string) error
	// Client sends webhooks (default: a client with Timeout).
	Client *http.Client
	// Env is the environment of hook commands (nil: none beyond PATH).
	Env []string
	// Keep is how long a delivered event stays in the spool, and how old
	// an event may be to be appended (default 7 days).
	Keep time.Duration
	// CompactAt is the spool size over which Append and Deliver compact
	// it (default 4 MiB).
	CompactAt int64
	// Now and Sleep are the clock (defaults: time.Now, a timer ctx ends).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Defaults of Options.Keep and Options.CompactAt.
const (
	DefaultKeep      = 7 * 24 * time.Hour
	DefaultCompactAt = 4 << 20
)

// Spool is the notification spool of one home.
type Spool struct {
	dir  string
	opts Options
	// crash, when set (by tests), is called after each step of a
	// compaction; an error stops it there, as a crash would.
	crash func(step string) error
}

// Open returns the spool kept in dir (<home>/notify), which is created
// when events are first appended.
func Open(dir string, opts Options) *Spool {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff = backoff.Policy{Initial: time.Second, Max: 30 * time.Second, Jitter: 0.1}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.CompactAt <= 0 {
		opts.CompactAt = DefaultCompactAt
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Timeout}
	}
	if opts.Sleep == nil {
		opts.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return &Spool{dir: dir, opts: opts}
}

// SpoolPath and DeadLetterPath are the spool's files.
func (s *Spool) SpoolPath() string      { return filepath.Join(s.dir, "spool.ndjson") }
func (s *Spool) DeadLetterPath() string { return filepath.Join(s.dir, "dead-letter.ndjson") }
func (s *Spool) cursorPath(hook string) string {
	return filepath.Join(s.dir, "cursors", hook+".json")
}
func (s *Spool) journalPath() string { return filepath.Join(s.dir, "compact.json") }

// Locks: appenders take appendLock, so ids are checked and lines
// written one process at a time; deliverers take deliverLock, so cursors
// move one process at a time. A deliverer never holds up an appender: it
// reads only complete lines, and a line is written in one write.
const (
	appendLock  = "append.lock"
	deliverLock = "deliver.lock"
)

// lock takes one of the spool's locks, waiting for it until ctx ends.
func (s *Spool) lock(ctx context.Context, name string) (*flock.Flock, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	l := flock.New(filepath.Join(s.dir, name))
	ok, err := l.TryLockContext(ctx, 20*time.Millisecond)
	if err != nil {
		return nil, fmt.Errorf("notification spool %s: lock: %w", s.dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("notification spool %s: lock not taken", s.dir)
	}
	return l, nil
}

// Append adds the events whose id the spool does not hold yet, and syncs
// the spool before returning.
func (s *Spool) Append(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	l, err := s.lock(ctx, appendLock)
	if err != nil {
		return err
	}
	defer l.Unlock()
	seen := map[string]bool{}
	if err := s.scan(0, func(e Event, _ int64) error { seen[e.ID] = true; return nil }); err != nil {
		return err
	}
	horizon := s.opts.Now().Add(-s.opts.Keep)
	var buf bytes.Buffer
	for _, e := range events {
		if seen[e.ID] || e.Time.Before(horizon) {
			continue
		}
		seen[e.ID] = true
		e.Time = e.Time.UTC()
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if buf.Len() == 0 {
		return nil
	}
	if err := appendSynced(s.SpoolPath(), buf.Bytes()); err != nil {
		return err
	}
	if s.over() {
		if d, ok := s.tryLock(deliverLock); ok {
			defer d.Unlock()
			return s.compact()
		}
	}
	return nil
}

// over tells whether the spool has grown past CompactAt.
func (s *Spool) over() bool {
	fi, err := os.Stat(s.SpoolPath())
	return err == nil && fi.Size() > s.opts.CompactAt
}

// tryLock takes one of the spool's locks if no one holds it.
func (s *Spool) tryLock(name string) (*flock.Flock, bool) {
	l := flock.New(filepath.Join(s.dir, name))
	ok, err := l.TryLock()
	if err != nil || !ok {
		return nil, false
	}
	return l, true
}

func appendSynced(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p, err)
	}
	return f.Close()
}

// scan calls fn with each complete event of the spool from offset, and
// the offset just past it. A last line cut short is not passed.
func (s *Spool) scan(offset int64, fn func(e Event, next int64) error) error {
	f, err := os.Open(s.SpoolPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // nothing, or a line cut short
		}
		if err != nil {
			return err
		}
		offset += int64(len(line))
		e, ok := parseLine(line)
		if !ok {
			continue // not an event: skipped, never delivered
		}
		if err := fn(e, offset); err != nil {
			return err
		}
	}
}

// header is the first line of a compacted spool.
type header struct {
	Generation *int `json:"spoolGeneration"`
}

// parseLine reads one spool line as an event; the header and lines that
// are not events are not.
func parseLine(line []byte) (Event, bool) {
	var e Event
	if bytes.HasPrefix(line, []byte(`{"spoolGeneration":`)) {
		var h header
		if json.Unmarshal(line, &h) == nil && h.Generation != nil {
			return e, false
		}
	}
	if json.Unmarshal(line, &e) != nil {
		return e, false
	}
	return e, true
}

// generation is the spool's generation: its header's, or 0 for a spool
// never compacted (or not there).
func (s *Spool) generation() (int, error) {
	f, err := os.Open(s.SpoolPath())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil {
		return 0, nil // empty, or no complete line: no header
	}
	var h header
	if bytes.HasPrefix(line, []byte(`{"spoolGeneration":`)) && json.Unmarshal(line, &h) == nil && h.Generation != nil {
		return *h.Generation, nil
	}
	return 0, nil
}

// cursor is a hook's delivery state.
type cursor struct {
	// Generation is the spool generation Offset is in.
	Generation int    `json:"generation,omitempty"`
	Offset     int64  `json:"offset"`   // every event before it is done
	Attempts   int    `json:"attempts"` // failed attempts of the event at Offset
	Error      string `json:"error,omitempty"`
}

func (s *Spool) cursor(hook string) (cursor, error) {
	var c cursor
	b, err := os.ReadFile(s.cursorPath(hook))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("notification cursor %s: %v", s.cursorPath(hook), err)
	}
	return c, nil
}

func (s *Spool) saveCursor(hook string, c cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.cursorPath(hook)), 0o700); err != nil {
		return err
	}
	return safefile.WriteBytes(s.cursorPath(hook), b, 0o600)
}

// Report is what one Deliver did.
type Report struct {
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`     // failed attempts
	Dead      int `json:"deadLetter"` // events given up on
	// Pending is how many events some hook still has to take (a hook
	// that kept failing until ctx ended).
	Pending int `json:"pending"`
}

// Deliver brings every hook up to date with the spool, retrying failed
// events with backoff, until done or ctx ends (the hook's place is kept:
// the next Deliver goes on from it). It holds the spool's lock throughout.
func (s *Spool) Deliver(ctx context.Context) (Report, error) {
	var rep Report
	l, err := s.lock(ctx, deliverLock)
	if err != nil {
		if ctx.Err() != nil { // another process delivers: it goes on from where we would
			return rep, nil
		}
		return rep, err
	}
	defer l.Unlock()
	if err := s.recover(); err != nil {
		return rep, err
	}
	gen, err := s.generation()
	if err != nil {
		return rep, err
	}
	for _, h := range s.opts.Hooks {
		if err := s.deliverHook(ctx, h, gen, &rep); err != nil {
			return rep, err
		}
	}
	if s.over() {
		if a, ok := s.tryLock(appendLock); ok {
			defer a.Unlock()
			return rep, s.compact()
		}
	}
	return rep, nil
}

func (s *Spool) deliverHook(ctx context.Context, h Hook, gen int, rep *Report) error {
	c, err := s.cursor(h.Name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(s.cursorPath(h.Name)); errors.Is(err, fs.ErrNotExist) {
		c.Generation = gen // a new hook starts at the oldest event kept
	}
	if c.Generation != gen {
		return fmt.Errorf("notification cursor %s: of spool generation %d, the spool is of %d (remove it to start the hook at the oldest event kept)", s.cursorPath(h.Name), c.Generation, gen)
	}
	stopped := false
	err = s.scan(c.Offset, func(e Event, next int64) error {
		if stopped {
			if h.wants(e.Type) {
				rep.Pending++
			}
			return nil
		}
		if !h.wants(e.Type) {
			c.Offset = next
			return nil
		}
		{
			for {
				if ctx.Err() != nil {
					stopped = true
					rep.Pending++
					return nil
				}
				err := s.send(ctx, h, e)
				if err == nil {
					rep.Delivered++
					break
				}
				rep.Failed++
				c.Attempts++
				c.Error = err.Error()
				if c.Attempts >= s.opts.MaxAttempts || errors.Is(err, ErrHostRefused) {
					if derr := s.deadLetter(e, h.Name, c.Attempts, err); derr != nil {
						return derr
					}
					rep.Dead++
					break
				}
				if serr := s.saveCursor(h.Name, c); serr != nil {
					return serr
				}
				if s.opts.Sleep(ctx, s.opts.Backoff.Delay(c.Attempts)) != nil {
					stopped = true
					rep.Pending++
					return nil
				}
			}
		}
		c = cursor{Generation: gen, Offset: next}
		return s.saveCursor(h.Name, c)
	})
	if err != nil {
		return err
	}
	return s.saveCursor(h.Name, c)
}

func (s *Spool) deadLetter(e Event, hook string, attempts int, cause error) error {
	b, err := json.Marshal(DeadLetter{Event: e, Hook: hook, Attempts: attempts, Error: cause.Error(), Time: s.opts.Now().UTC()})
	if err != nil {
		return err
	}
	return appendSynced(s.DeadLetterPath(), append(b, '\n'))
}

// DeadLetters reads the dead-letter spool (none when it does not exist).
func DeadLetters(dir string) ([]DeadLetter, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dead-letter.ndjson"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var d DeadLetter
		if err := json.Unmarshal(line, &d); err != nil {
			return out, fmt.Errorf("dead letters %s, line %d: %v", filepath.Join(dir, "dead-letter.ndjson"), i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// send delivers one event to one hook, within Timeout.
func (s *Spool) send(ctx context.Context, h Hook, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if len(h.Command) > 0 {
		cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
		cmd.Stdin = bytes.NewReader(body)
		cmd.Env = s.opts.Env
		var stderr bytes.Buffer
		cmd.Stderr = &limited{w: &stderr, n: 512}
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
				msg = msg[i+1:]
			}
			if msg != "" {
				return fmt.Errorf("hook %s: command %s: %v (%s): %w", h.Name, h.Command[0], err, msg, ErrDelivery)
			}
			return fmt.Errorf("hook %s: command %s: %v: %w", h.Name, h.Command[0], err, ErrDelivery)
		}
		return nil
	}
	u, err := url.Parse(h.URL)
	if err != nil {
		return fmt.Errorf("hook %s: %w: %v", h.Name, ErrHook, err)
	}
	if s.opts.Allow != nil {
		if err := s.opts.Allow(u.Host); err != nil {
			return fmt.Errorf("hook %s: %w: %w", h.Name, ErrHostRefused, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("hook %s: %w: %v", h.Name, ErrHook, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Stella-Event", e.Type)
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("hook %s: post to %s: %v: %w", h.Name, u.Host, err, ErrDelivery)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hook %s: %s answered %s: %w", h.Name, u.Host, resp.Status, ErrDelivery)
	}
	return nil
}

// limited keeps the first n bytes written to it.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}
