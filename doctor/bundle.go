package doctor

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/run"
)

// Escalation is what the runbook's escalation matrix asks for: run id,
// tenant, pack version, plan hash and timestamps, with the doctor's
// results. It is escalation.json in a bundle.
type Escalation struct {
	// Version of this document's layout.
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Stella is the version of the stella that wrote it.
	Stella string `json:"stella"`
	Tenant string `json:"tenant"`
	Sealed bool   `json:"sealed"`
	// Run is the run escalated; nil when none was named.
	Run    *EscalatedRun `json:"run,omitempty"`
	Doctor Report        `json:"doctor"`
}

// EscalatedRun is what an escalation says of the run: never its inputs,
// outputs or step commands, which may carry more than an operator meant to
// send.
type EscalatedRun struct {
	ID       string        `json:"id"`
	Tenant   string        `json:"tenant"`
	Pack     plan.PackRef  `json:"pack"`
	PlanHash digest.Digest `json:"planHash"`
	State    string        `json:"state"`
	Created  time.Time     `json:"created"`
	Updated  time.Time     `json:"updated"`
	Ended    *time.Time    `json:"ended,omitempty"`
	Failure  *run.Failure  `json:"failure,omitempty"`
	Timeline []run.Event   `json:"timeline"`
	// Steps are each step's state, attempts and times.
	Steps []EscalatedStep `json:"steps"`
}

// EscalatedStep is one step of an escalated run.
type EscalatedStep struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"`
	State    string     `json:"state"`
	Attempts int        `json:"attempts,omitempty"`
	Exit     *int       `json:"exit,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Ended    *time.Time `json:"ended,omitempty"`
	Error    string     `json:"error,omitempty"`
	// Secrets names the secrets the step received (names only).
	Secrets []string `json:"secrets,omitempty"`
}

// Report is a doctor run: the results and their count by status.
type Report struct {
	Checks  []Result `json:"checks"`
	Summary Summary  `json:"summary"`
}

// NewReport makes the report of results.
func NewReport(rs []Result) Report {
	if rs == nil {
		rs = []Result{}
	}
	return Report{Checks: rs, Summary: Summarize(rs)}
}

// EscalateRun is what an escalation keeps of rec.
func EscalateRun(rec *run.Record) *EscalatedRun {
	er := &EscalatedRun{ID: rec.ID, Tenant: rec.Tenant, Pack: rec.Pack, PlanHash: rec.PlanHash, State: rec.State,
		Created: rec.Created, Updated: rec.Updated, Ended: rec.Ended, Failure: rec.Failure, Timeline: rec.Timeline}
	if er.Timeline == nil {
		er.Timeline = []run.Event{}
	}
	er.Steps = []EscalatedStep{}
	for _, id := range sortedStepIDs(rec) {
		s := rec.Steps[id]
		es := EscalatedStep{ID: s.ID, Kind: s.Kind, State: s.State, Attempts: s.Attempts, Exit: s.Exit,
			Started: s.Started, Ended: s.Ended, Error: s.Error}
		for _, u := range s.Secrets {
			es.Secrets = append(es.Secrets, u.Name)
		}
		er.Steps = append(er.Steps, es)
	}
	return er
}

func sortedStepIDs(rec *run.Record) []string {
	ids := make([]string, 0, len(rec.Steps))
	for id := range rec.Steps {
		ids = append(ids, id)
	}
	// Steps in the order they started, then by id.
	less := func(a, b string) bool {
		sa, sb := rec.Steps[a].Started, rec.Steps[b].Started
		switch {
		case sa != nil && sb != nil && !sa.Equal(*sb):
			return sa.Before(*sb)
		case sa != nil && sb == nil:
			return true
		case sa == nil && sb != nil:
			return false
		}
		return a < b
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && less(ids[j], ids[j-1]); j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
	return ids
}

// Bundle layout: a gzip-compressed tar of these files.
const (
	BundleEscalation = "escalation.json"
	BundleLog        = "run.log.ndjson"
)

// WriteBundle writes an escalation bundle to path, atomically: the
// escalation as escalation.json and, when log is not nil, the run's log
// lines as run.log.ndjson (one JSON line each). Everything written passes
// through mask first: the log was masked when the run wrote it, and mask
// (the values of the secrets the caller knows) masks it again, with the
// messages of the doctor's results. No file of the home is copied whole.
func WriteBundle(ctx context.Context, path string, e Escalation, log func(fn func(run.Line) error) error, mask *redact.Set) error {
	if mask == nil {
		mask = redact.New()
	}
	meta, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	var logBuf bytes.Buffer
	if log != nil {
		enc := json.NewEncoder(&logBuf)
		if err := log(func(l run.Line) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			l.Data = nil
			return enc.Encode(l)
		}); err != nil {
			return fmt.Errorf("escalation bundle: log of run %s: %w", e.Run.ID, err)
		}
	}
	f, err := safefile.Create(path, 0o600)
	if err != nil {
		return fmt.Errorf("escalation bundle %s: %w", path, err)
	}
	defer f.Abort()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	add := func(name string, b []byte) error {
		b = mask.Bytes(b)
		hdr := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: e.Created, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add(BundleEscalation, append(meta, '\n')); err != nil {
		return fmt.Errorf("escalation bundle %s: %w", path, err)
	}
	if log != nil {
		if err := add(BundleLog, logBuf.Bytes()); err != nil {
			return fmt.Errorf("escalation bundle %s: %w", path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("escalation bundle %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("escalation bundle %s: %w", path, err)
	}
	return f.Commit()
}

// ReadBundle reads the files of an escalation bundle, by name.
func ReadBundle(r io.Reader) (map[string][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
		if err != nil {
			return nil, err
		}
		out[h.Name] = b
	}
}
