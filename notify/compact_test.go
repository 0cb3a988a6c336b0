package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stellaops.io/stella/backoff"
)

// sink is a webhook server recording, per hook (the URL path), the ids it
// took; a hook marked down answers 503.
type sink struct {
	mu   sync.Mutex
	got  map[string][]string
	down map[string]bool
	srv  *httptest.Server
}

func newSink(t *testing.T) *sink {
	k := &sink{got: map[string][]string{}, down: map[string]bool{}}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/")
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.down[name] {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		k.got[name] = append(k.got[name], e.ID)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *sink) hook(name string) Hook { return Hook{Name: name, URL: k.srv.URL + "/" + name} }

func (k *sink) setDown(name string, down bool) {
	k.mu.Lock()
	k.down[name] = down
	k.mu.Unlock()
}

func (k *sink) ids(name string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.got[name]...)
}

// clock is a settable Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// compactSpool keeps delivered events for an hour; a failed attempt ends
// the delivery (the hook stays pending, as when its host is down past
// deliverWithin).
func compactSpool(dir string, c *clock, hooks ...Hook) *Spool {
	return Open(dir, Options{Hooks: hooks, MaxAttempts: 3, Backoff: backoff.Policy{Initial: time.Second, Max: time.Second},
		Keep: time.Hour, Now: c.now,
		Sleep: func(context.Context, time.Duration) error { return context.DeadlineExceeded }})
}

func batch(run string, from, n int, at time.Time) []Event {
	var out []Event
	for i := from; i < from+n; i++ {
		out = append(out, Event{ID: fmt.Sprintf("%s#%d", run, i), Type: "pack.run.step.succeeded", Time: at, RunID: run, PackID: "demo:1.0.0", Tenant: "default"})
	}
	return out
}

func idsOf(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func spoolIDs(t *testing.T, s *Spool) []string {
	t.Helper()
	var out []string
	if err := s.scan(0, func(e Event, _ int64) error { out = append(out, e.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func deliver(t *testing.T, s *Spool) Report {
	t.Helper()
	rep, err := s.Deliver(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func appendEvents(t *testing.T, s *Spool, evs []Event) {
	t.Helper()
	if err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// A hook that was down while the spool was compacted gets exactly what it
// missed; an old run's events appended again are not delivered again.
func TestCompactKeepsWhatAHookMissed(t *testing.T) {
	k := newSink(t)
	c := &clock{t: t0}
	dir := t.TempDir()
	s := compactSpool(dir, c, k.hook("up"), k.hook("pager"))
	old := batch("run:default:old", 0, 5, t0)
	appendEvents(t, s, old)
	if rep := deliver(t, s); rep != (Report{Delivered: 10}) {
		t.Fatalf("first delivery %+v", rep)
	}

	c.t = t0.Add(2 * time.Hour)
	k.setDown("pager", true)
	fresh := batch("run:default:new", 0, 3, c.t)
	appendEvents(t, s, fresh)
	if rep := deliver(t, s); rep != (Report{Delivered: 3, Failed: 1, Pending: 3}) {
		t.Fatalf("delivery with the pager down %+v", rep)
	}
	// Past Keep the pager still holds what it has not taken.
	c.t = t0.Add(5 * time.Hour)
	if err := s.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(idsOf(fresh), spoolIDs(t, s)); diff != "" {
		t.Errorf("spool after compaction (-want +got):\n%s", diff)
	}
	if gen, err := s.generation(); err != nil || gen != 1 {
		t.Errorf("generation %d %v, want 1", gen, err)
	}

	k.setDown("pager", false)
	appendEvents(t, s, append(old, fresh...)) // the old run seen again
	if rep := deliver(t, s); rep != (Report{Delivered: 3}) {
		t.Fatalf("delivery after compaction %+v", rep)
	}
	all := append(idsOf(old), idsOf(fresh)...)
	for _, h := range []string{"up", "pager"} {
		if diff := cmp.Diff(all, k.ids(h)); diff != "" {
			t.Errorf("hook %s received (-want +got):\n%s", h, diff)
		}
	}
	// Everything delivered and old: a second compaction leaves the header.
	if err := s.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := spoolIDs(t, s); len(ids) != 0 {
		t.Errorf("spool after second compaction %v", ids)
	}
	appendEvents(t, s, append(old, fresh...))
	if rep := deliver(t, s); rep != (Report{}) {
		t.Errorf("old events delivered again: %+v", rep)
	}
	for _, h := range []string{"up", "pager"} {
		if diff := cmp.Diff(all, k.ids(h)); diff != "" {
			t.Errorf("hook %s received (-want +got):\n%s", h, diff)
		}
	}
}

var errCrash = errors.New("crash")

// A crash after any step of a compaction: the next delivery neither loses
// nor repeats an event, for a hook that was up and one that was down.
func TestCompactCrashAtEachStep(t *testing.T) {
	for _, step := range []string{"journal", "spool", "cursor pager", "cursor up", "none"} {
		t.Run(strings.ReplaceAll(step, " ", "-"), func(t *testing.T) {
			k := newSink(t)
			c := &clock{t: t0}
			dir := t.TempDir()
			s := compactSpool(dir, c, k.hook("up"), k.hook("pager"))
			old := batch("run:default:old", 0, 4, t0)
			appendEvents(t, s, old)
			deliver(t, s)
			c.t = t0.Add(2 * time.Hour)
			k.setDown("pager", true)
			fresh := batch("run:default:new", 0, 3, c.t)
			appendEvents(t, s, fresh)
			deliver(t, s)
			k.setDown("pager", false)
			c.t = t0.Add(5 * time.Hour)

			var steps []string
			s.crash = func(name string) error {
				steps = append(steps, name)
				if name == step {
					return errCrash
				}
				return nil
			}
			err := s.Compact(context.Background())
			if step == "none" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([]string{"journal", "spool", "cursor pager", "cursor up"}, steps); diff != "" {
					t.Errorf("steps (-want +got):\n%s", diff)
				}
			} else if !errors.Is(err, errCrash) {
				t.Fatalf("compaction: %v, want the crash", err)
			}

			s = compactSpool(dir, c, k.hook("up"), k.hook("pager"))
			later := batch("run:default:later", 0, 2, c.t)
			appendEvents(t, s, append(old, later...))
			deliver(t, s)
			if _, err := os.Stat(s.journalPath()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("journal left after delivery: %v", err)
			}
			// And once more compacted, with everything seen again.
			c.t = t0.Add(10 * time.Hour)
			if err := s.Compact(context.Background()); err != nil {
				t.Fatal(err)
			}
			appendEvents(t, s, append(append(old, fresh...), later...))
			deliver(t, s)

			all := append(append(idsOf(old), idsOf(fresh)...), idsOf(later)...)
			for _, h := range []string{"up", "pager"} {
				if diff := cmp.Diff(all, k.ids(h)); diff != "" {
					t.Errorf("hook %s received (-want +got):\n%s", h, diff)
				}
			}
		})
	}
}

// 10,000 events passed over 100 hours with Keep an hour: the spool never
// grows past CompactAt and one batch, so what Append scans does not grow
// with history, and every event the hook wants reaches it once. (The hook
// wants one event a batch: a delivery syncs a cursor, 10,000 would take
// a minute.)
func TestSpoolStaysBounded(t *testing.T) {
	k := newSink(t)
	c := &clock{t: t0}
	dir := t.TempDir()
	h := k.hook("up")
	h.Events = []string{"pack.run.failed"}
	s := compactSpool(dir, c, h)
	s.opts.CompactAt = 64 << 10
	var want []string
	var largest, batchSize int64
	for r := 0; r < 100; r++ {
		c.t = t0.Add(time.Duration(r) * time.Hour)
		evs := batch(fmt.Sprintf("run:default:r%d", r), 0, 100, c.t)
		evs[99].Type = "pack.run.failed"
		want = append(want, evs[99].ID)
		before := size(t, s)
		appendEvents(t, s, evs)
		batchSize = max(batchSize, size(t, s)-before)
		largest = max(largest, size(t, s))
		if rep := deliver(t, s); rep != (Report{Delivered: 1}) {
			t.Fatalf("round %d: %+v", r, rep)
		}
		largest = max(largest, size(t, s))
	}
	if largest > s.opts.CompactAt+batchSize {
		t.Errorf("spool grew to %d bytes, over %d + one batch of %d", largest, s.opts.CompactAt, batchSize)
	}
	if gen, err := s.generation(); err != nil || gen < 10 {
		t.Errorf("generation %d %v: the spool was hardly compacted", gen, err)
	}
	// The first run again: too old, not appended, not delivered.
	again := batch("run:default:r0", 0, 100, t0)
	again[99].Type = "pack.run.failed"
	appendEvents(t, s, again)
	for _, id := range spoolIDs(t, s) {
		if strings.HasPrefix(id, "run:default:r0#") {
			t.Fatalf("old event %s appended again", id)
		}
	}
	if rep := deliver(t, s); rep != (Report{}) {
		t.Errorf("old run delivered again: %+v", rep)
	}
	if diff := cmp.Diff(want, k.ids("up")); diff != "" {
		t.Errorf("hook received (-want +got):\n%s", diff)
	}
}

func size(t *testing.T, s *Spool) int64 {
	t.Helper()
	fi, err := os.Stat(s.SpoolPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
