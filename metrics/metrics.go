// Package metrics computes the runbook's pack_* metrics from the runs of
// one stella home, with the Prometheus Go client.
//
// # Model
//
// Nothing is counted in memory as runs go: every value is computed, when
// it is gathered, from what package runs keeps (each run's summary, and
// the record its journal replays: steps, gates, timeline). So a
// `stella serve` process reports the runs that `stella pack run` and
// `stella pack runs resume` processes drive, and a textfile written after
// a run says the same as /metrics would at that moment. The price is a
// read of the runs at each gathering; the records of ended runs are kept
// between gatherings while their summary is unchanged.
//
// # Metrics
//
// Labels are pack (the pack's name) and tenant, and for some a bounded
// label of their own (kind, result); never a run id. Counters count what
// the kept runs' timelines hold, so they fall when `stella pack runs gc`
// removes runs (Prometheus reads a fall as a counter reset).
//
//	pack_run_active{pack,tenant}                   runs in state running or paused
//	pack_runs_total{pack,tenant,result}            run end events (succeeded, failed, cancelled, expired)
//	pack_run_success_ratio{pack,tenant}            succeeded / ended, over runs whose state is an end state
//	pack_step_duration_seconds{pack,tenant,kind}   steps that ended: from first start to end
//	pack_gate_wait_seconds{pack,tenant}            approval gates decided: from waiting to decision
//	pack_gate_waiting_seconds{pack,tenant}         the oldest approval gate still waiting: how long so far
//	pack_egress_denied_total{pack,tenant}          network destinations refused to steps
//
// The Prometheus client imports net/http; this package opens no
// connection and serves nothing (package serve does).
package metrics

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// Source is where the runs are read: *runs.Store.
type Source interface {
	// List returns the summaries (records without steps and timeline) of
	// the runs f selects.
	List(ctx context.Context, f runs.Filter) ([]*run.Record, error)
	// Get returns the whole record of run id.
	Get(ctx context.Context, id string) (*run.Record, error)
}

// Bucket bounds, in seconds.
var (
	// StepBuckets: steps take from well under a second to an hour.
	StepBuckets = []float64{0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600}
	// GateBuckets: approvals take minutes to a day; the runbook alerts
	// past 30 minutes.
	GateBuckets = []float64{60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600}
)

// Results are the values of pack_runs_total's result label, each a run
// end state.
var Results = []string{run.Succeeded, run.Failed, run.Cancelled, run.Expired}

var (
	labels  = []string{"pack", "tenant"}
	active  = prometheus.NewDesc("pack_run_active", "Runs in state running or paused.", labels, nil)
	total   = prometheus.NewDesc("pack_runs_total", "Run end events in the timelines of the runs kept on this host, by result.", append(labels, "result"), nil)
	ratio   = prometheus.NewDesc("pack_run_success_ratio", "Runs that ended succeeded, over runs that ended (0 to 1), by each run's current state.", labels, nil)
	steps   = prometheus.NewDesc("pack_step_duration_seconds", "Duration of steps that ended, from their first start to their end, by step kind.", append(labels, "kind"), nil)
	gates   = prometheus.NewDesc("pack_gate_wait_seconds", "Time approval gates waited, from when the run reached the gate to its decision.", labels, nil)
	waiting = prometheus.NewDesc("pack_gate_waiting_seconds", "How long the oldest approval gate still waiting has waited so far.", labels, nil)
	egress  = prometheus.NewDesc("pack_egress_denied_total", "Network destinations refused to steps.", labels, nil)
)

// Collector is a prometheus.Collector computing the metrics from src.
type Collector struct {
	src Source
	now func() time.Time

	mu    sync.Mutex
	ended map[string]*run.Record // whole records of ended runs, by id
}

// NewCollector returns a collector of src's runs; now is the clock of
// gate waits (nil: time.Now).
func NewCollector(src Source, now func() time.Time) *Collector {
	if now == nil {
		now = time.Now
	}
	return &Collector{src: src, now: now, ended: map[string]*run.Record{}}
}

// NewRegistry returns a registry holding only a collector of src's runs.
func NewRegistry(src Source, now func() time.Time) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(src, now))
	return reg
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{active, total, ratio, steps, gates, waiting, egress} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A run whose record cannot be
// read counts by its summary only; runs that cannot be listed make every
// metric invalid, with the error.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.Snapshot(context.Background())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(active, err)
		return
	}
	for _, k := range snap.keys() {
		g := snap.Groups[k]
		l := []string{k.Pack, k.Tenant}
		ch <- prometheus.MustNewConstMetric(active, prometheus.GaugeValue, float64(g.Active), l...)
		for _, r := range Results {
			ch <- prometheus.MustNewConstMetric(total, prometheus.CounterValue, float64(g.Ends[r]), append(l, r)...)
		}
		if g.Ended > 0 {
			ch <- prometheus.MustNewConstMetric(ratio, prometheus.GaugeValue, float64(g.Succeeded)/float64(g.Ended), l...)
		}
		kinds := make([]string, 0, len(g.Steps))
		for kind := range g.Steps {
			kinds = append(kinds, kind)
		}
		sort.Strings(kinds)
		for _, kind := range kinds {
			h := g.Steps[kind]
			ch <- prometheus.MustNewConstHistogram(steps, h.Count, h.Sum, h.cumulative(), append(l, kind)...)
		}
		ch <- prometheus.MustNewConstHistogram(gates, g.Gates.Count, g.Gates.Sum, g.Gates.cumulative(), l...)
		ch <- prometheus.MustNewConstMetric(waiting, prometheus.GaugeValue, g.Waiting.Seconds(), l...)
		ch <- prometheus.MustNewConstMetric(egress, prometheus.CounterValue, float64(g.EgressDenied), l...)
	}
}

// Key is one pack and tenant.
type Key struct{ Pack, Tenant string }

// Group is what the metrics say of one pack and tenant.
type Group struct {
	Active       int            // runs running or paused
	Ends         map[string]int // end events by result
	Ended        int            // runs whose state is an end state
	Succeeded    int            // of those, succeeded
	Steps        map[string]*Histogram
	Gates        *Histogram
	Waiting      time.Duration // the oldest waiting approval gate's wait so far
	EgressDenied int
}

// Snapshot is the metrics' values at one moment.
type Snapshot struct {
	Groups map[Key]*Group
}

func (s *Snapshot) keys() []Key {
	ks := make([]Key, 0, len(s.Groups))
	for k := range s.Groups {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].Pack != ks[j].Pack {
			return ks[i].Pack < ks[j].Pack
		}
		return ks[i].Tenant < ks[j].Tenant
	})
	return ks
}

// Histogram is observations in buckets (counts per bucket, not
// cumulative; the last slot is above the last bound).
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
}

// Observe adds v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.Bounds, v) // first bound >= v
	h.Counts[i]++
	h.Count++
	h.Sum += v
}

func (h *Histogram) cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		m[b] = n
	}
	return m
}

// Snapshot computes the metrics from the runs now.
func (c *Collector) Snapshot(ctx context.Context) (*Snapshot, error) {
	sums, err := c.src.List(ctx, runs.Filter{})
	if err != nil {
		return nil, fmt.Errorf("metrics: list runs: %w", err)
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	snap := &Snapshot{Groups: map[Key]*Group{}}
	seen := make(map[string]bool, len(sums))
	for _, sum := range sums {
		seen[sum.ID] = true
		k := Key{Pack: sum.Pack.Name, Tenant: sum.Tenant}
		g := snap.Groups[k]
		if g == nil {
			g = &Group{Ends: map[string]int{}, Steps: map[string]*Histogram{}, Gates: newHistogram(GateBuckets)}
			snap.Groups[k] = g
		}
		switch {
		case sum.State == run.Running || sum.State == run.Paused:
			g.Active++
		case run.Terminal(sum.State):
			g.Ended++
			if sum.State == run.Succeeded {
				g.Succeeded++
			}
		}
		rec := c.record(ctx, sum)
		if rec == nil {
			continue
		}
		g.add(rec, now)
	}
	for id := range c.ended {
		if !seen[id] {
			delete(c.ended, id) // removed by gc
		}
	}
	return snap, nil
}

// record returns the whole record of the run sum summarises, from the
// kept ones when it ended and has not changed since; nil when it cannot
// be read.
func (c *Collector) record(ctx context.Context, sum *run.Record) *run.Record {
	if r := c.ended[sum.ID]; r != nil && r.State == sum.State && r.Updated.Equal(sum.Updated) {
		return r
	}
	rec, err := c.src.Get(ctx, sum.ID)
	if err != nil {
		return nil
	}
	delete(c.ended, sum.ID)
	if run.Terminal(rec.State) && rec.State == sum.State && rec.Updated.Equal(sum.Updated) {
		c.ended[sum.ID] = rec
	}
	return rec
}

var ends = map[string]string{
	run.EventRunSucceeded: run.Succeeded,
	run.EventRunFailed:    run.Failed,
	run.EventRunCancelled: run.Cancelled,
	run.EventRunExpired:   run.Expired,
}

// add counts rec's timeline, steps and gates in g.
func (g *Group) add(rec *run.Record, now time.Time) {
	for _, e := range rec.Timeline {
		if r, ok := ends[e.Type]; ok {
			g.Ends[r]++
		}
		if e.Type == run.EventNetworkBlocked {
			g.EgressDenied++
		}
	}
	for _, sr := range rec.Steps {
		if sr.Started != nil && sr.Ended != nil && sr.State != run.StepSkipped {
			h := g.Steps[sr.Kind]
			if h == nil {
				h = newHistogram(StepBuckets)
				g.Steps[sr.Kind] = h
			}
			h.Observe(nonNegative(sr.Ended.Sub(*sr.Started)).Seconds())
		}
		gt := sr.Gate
		if gt == nil || gt.Approval == "" || gt.Since == nil {
			continue
		}
		switch {
		case gt.State == run.GateWaiting && sr.Ended == nil:
			if w := nonNegative(now.Sub(*gt.Since)); w > g.Waiting {
				g.Waiting = w
			}
		case sr.Ended != nil && (gt.State == run.GateApproved || gt.State == run.GateRejected || gt.State == run.GateExpired):
			g.Gates.Observe(nonNegative(sr.Ended.Sub(*gt.Since)).Seconds())
		}
	}
}

func nonNegative(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// Text renders what g gathers in the Prometheus text format.
func Text(g prometheus.Gatherer) ([]byte, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// TextfileExt is the name ending node_exporter's textfile collector reads.
const TextfileExt = ".prom"

// WriteTextfile writes what g gathers to path, for node_exporter's
// textfile collector, atomically (temp file, fsync, rename in path's
// folder, so node_exporter never reads half a file).
func WriteTextfile(g prometheus.Gatherer, path string) error {
	if !strings.HasSuffix(path, TextfileExt) {
		return fmt.Errorf("metrics textfile %s: the name must end in %s (node_exporter reads only those)", path, TextfileExt)
	}
	b, err := Text(g)
	if err != nil {
		return err
	}
	if err := safefile.WriteBytes(path, b, 0o644); err != nil {
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	return nil
}
