package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"stellaops.io/stella/backoff"
	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
)

// OutputEnv names the file a step writes its outputs to.
const OutputEnv = "STELLA_OUTPUT"

// runStep runs a run step with the pack's failure policy: up to
// 1 + failure.retries attempts, waiting the policy's backoff between them.
// Retries cover failed and errored attempts alike; a cancelled one is never
// retried.
func (d *driver) runStep(ctx context.Context, s *plan.Step, vars map[string]any) error {
	maxAttempts := 1 + d.pl.Failure.Retries
	d.mu.Lock()
	sr := d.stepRecord(s)
	done := sr.Attempts
	lost := sr.State == StepErrored && strings.HasPrefix(sr.Error, "runner lost")
	d.mu.Unlock()
	if done >= maxAttempts {
		if !d.retryFailed {
			err := fmt.Errorf("step %s: %s, and its %d attempt(s) are used: %w", s.ID, map[bool]string{true: "runner lost", false: "no attempt left"}[lost], done, ErrStepErrored)
			d.recordFailure(s.ID, err)
			return err
		}
		// Resuming a failed run is the operator's decision to try again.
		maxAttempts = done + 1 + d.pl.Failure.Retries
	}
	for attempt := done + 1; ; attempt++ {
		err := d.attempt(ctx, s, vars, attempt)
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrCancelled) || attempt >= maxAttempts ||
			!(errors.Is(err, ErrStepFailed) || errors.Is(err, ErrStepErrored)) {
			if err != nil && !errors.Is(err, ErrCancelled) && ctx.Err() == nil && !s.ContinueOnError {
				d.recordFailure(s.ID, err)
			}
			return err
		}
		wait := d.backoff(attempt)
		if uerr := d.update(ctx, func(r *Record) {
			d.stepRecord(s).State = StepRetrying
			d.event(EventStepRetrying, s.ID, attempt, fmt.Sprintf("retrying in %s: %v", wait, err))
		}); uerr != nil {
			return uerr
		}
		d.logf(s.ID, "attempt %d of %d failed (%v); retrying in %s", attempt, maxAttempts, err, wait)
		if err := d.sleep(ctx, wait); err != nil {
			return d.cancelStep(ctx, s, d.cancelled(ctx))
		}
	}
}

func (d *driver) backoff(attempt int) time.Duration {
	if d.e.Backoff != nil {
		return d.e.Backoff(d.pl.Failure.Backoff, attempt)
	}
	return PolicyOf(d.pl.Failure.Backoff).Delay(attempt)
}

// PolicyOf is the backoff of a pack's failure policy: initial 1s, multiplier
// 2 and no maximum unless the pack says otherwise, with ±10% jitter so many
// retrying runs do not move in step.
func PolicyOf(b pack.Backoff) backoff.Policy {
	p := backoff.Policy{Initial: time.Duration(b.Initial), Multiplier: b.Multiplier, Max: time.Duration(b.Max), Jitter: 0.1}
	if p.Initial == 0 {
		p.Initial = time.Second
	}
	return p
}

func (d *driver) sleep(ctx context.Context, wait time.Duration) error {
	if d.e.Sleep != nil {
		return d.e.Sleep(ctx, wait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordFailure notes the step whose failure ends the run, with its exit
// status and the last lines of its log.
func (d *driver) recordFailure(id string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.Failure != nil && d.rec.Failure.StepID != "" {
		return
	}
	f := &Failure{StepID: id, Code: failureCode(err)}
	if sr := d.rec.Steps[id]; sr != nil {
		f.Exit = sr.Exit
	}
	if t := d.tails[id]; t != nil {
		f.LogTail = t.lines()
	}
	d.rec.Failure = f
}

// attempt runs one attempt of a run step. Its start is durable before the
// command starts; its end, with its outputs, before anything else happens.
func (d *driver) attempt(ctx context.Context, s *plan.Step, vars map[string]any, attempt int) error {
	argv := make([]string, 0, len(s.Run.Command))
	for _, a := range s.Run.Command {
		v, err := d.render(a, vars, s.ID)
		if err != nil {
			return d.stepError(ctx, s, fmt.Errorf("command %q: %w", a, err))
		}
		argv = append(argv, v)
	}
	env := map[string]string{}
	for k, v := range s.Run.Env {
		r, err := d.render(v, vars, s.ID)
		if err != nil {
			return d.stepError(ctx, s, fmt.Errorf("env %s: %w", k, err))
		}
		env[k] = r
	}
	dir := d.e.Work
	if s.Run.Workdir != "" {
		if !filepath.IsLocal(s.Run.Workdir) {
			return d.stepErrored(ctx, s, ErrStepErrored, fmt.Errorf("workdir %q is not inside the work folder", s.Run.Workdir))
		}
		dir = filepath.Join(d.e.Work, s.Run.Workdir)
	}
	outFile := filepath.Join(d.e.Outputs, outputFileName(s.ID, attempt))
	if err := os.WriteFile(outFile, nil, 0o600); err != nil {
		return d.stepErrored(ctx, s, ErrStepErrored, fmt.Errorf("output file: %w", err))
	}
	defer os.Remove(outFile)
	env[OutputEnv] = outFile
	env["STELLA_RUN_ID"] = d.rec.ID
	env["STELLA_STEP_ID"] = s.ID

	// Secrets are resolved now, as the step starts; a missing one stops
	// the run before it does.
	secretDir, uses, err := d.deliverSecrets(ctx, s, attempt, env)
	if err != nil {
		return d.stepErrored(ctx, s, ErrSecretUndelivered, err)
	}
	if secretDir != "" {
		defer func() { _ = destroyFolder(secretDir) }()
	}
	shown := make([]string, len(argv))
	for i, a := range argv {
		shown[i] = d.mask(a)
	}

	token := fmt.Sprintf("%s|%s|%d", d.rec.ID, s.ID, attempt)
	sandbox := d.chaosNetwork(s, d.pl.Sandbox)
	if err := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		sr.State, sr.Attempts, sr.Started, sr.Ended, sr.Exit, sr.Signal, sr.Error = Running, attempt, &now, nil, nil, "", ""
		sr.Process = token
		sr.Command = shown
		sr.Secrets, sr.Isolation = uses, nil
		d.event(EventStepStarted, s.ID, attempt, "")
	}); err != nil {
		return err
	}
	sctx := ctx
	var timeout time.Duration
	if t, err := parseDuration(s.Timeout); err == nil && t > 0 {
		timeout = t
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeoutCause(ctx, t, errStepTimeout)
		defer cancel()
	}
	stdoutLines, stderrLines := d.lineWriter(s.ID, "stdout"), d.lineWriter(s.ID, "stderr")
	// Masking comes before framing: a value split across writes or lines
	// is masked before any line is cut from it.
	stdout, stderr := d.redact.Writer(stdoutLines), d.redact.Writer(stderrLines)
	// The step holds a core producing its output: reading ahead of the
	// masker on another goroutine would cost CPU that the step needs.
	stdout.Serial, stderr.Serial = true, true
	blocked := d.blockedReporter(ctx, s, attempt)
	exit := d.e.Executor.Execute(sctx, Invocation{RunID: d.rec.ID, StepID: s.ID, Attempt: attempt, Command: argv, Env: env, Dir: dir,
		Secrets: s.Run.Secrets, SecretDir: secretDir, Sandbox: sandbox, Blocked: blocked.report,
		Stdout: stdout, Stderr: stderr, Token: token})
	_ = stdout.Flush()
	_ = stderr.Flush()
	stdoutLines.flush()
	stderrLines.flush()
	isolation := exit.Isolation
	if isolation != nil {
		isolation.Blocked = blocked.count()
	}

	var stepErr error
	var outputs map[string]any
	state := Succeeded
	switch {
	case ctx.Err() != nil:
		return d.cancelStep(ctx, s, d.cancelled(ctx))
	case sctx.Err() != nil && errors.Is(context.Cause(sctx), errStepTimeout):
		state, stepErr = StepErrored, fmt.Errorf("step %s timed out after %s: %w", s.ID, timeout, ErrStepErrored)
	case exit.Err != nil:
		state, stepErr = StepErrored, fmt.Errorf("step %s could not run %q: %v: %w", s.ID, argv[0], exit.Err, ErrStepErrored)
	case exit.Limit != "":
		how := fmt.Sprintf("exit status %d", exit.Code)
		if exit.Signal != "" {
			how = "killed by " + exit.Signal
		}
		state, stepErr = Failed, fmt.Errorf("step %s: stopped by its %s limit (%s): %s: %w: %w", s.ID, exit.Limit, limitValue(d.pl.Sandbox.Limits, exit.Limit), how, ErrLimit, ErrStepFailed)
	case exit.Code != 0:
		how := fmt.Sprintf("exit status %d", exit.Code)
		if exit.Signal != "" {
			how = "killed by " + exit.Signal
		}
		state, stepErr = Failed, fmt.Errorf("step %s: %s: %w", s.ID, how, ErrStepFailed)
	default:
		o, err := readOutputs(outFile, s.Run.Outputs)
		if err != nil {
			state, stepErr = StepErrored, fmt.Errorf("step %s: outputs: %v: %w", s.ID, err, ErrStepErrored)
		}
		if o != nil {
			outputs = d.maskValue(o).(map[string]any)
		}
	}
	d.updateSoon(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		sr.State, sr.Ended, sr.Process, sr.Isolation = state, &now, "", isolation
		if exit.Err == nil {
			code := exit.Code
			sr.Exit, sr.Signal = &code, exit.Signal
		}
		switch state {
		case Succeeded:
			sr.Outputs = outputs
			d.outputs[s.ID] = outputs
			d.event(EventStepSucceeded, s.ID, attempt, "")
		case Failed:
			sr.Error = d.mask(stepErr.Error())
			d.event(EventStepFailed, s.ID, attempt, stepErr.Error())
		default:
			sr.Error = d.mask(stepErr.Error())
			d.event(EventStepErrored, s.ID, attempt, stepErr.Error())
		}
	})
	return stepErr
}

var errStepTimeout = errors.New("step timeout")

// cancelStep records a step stopped by the run's cancellation (or timeout).
func (d *driver) cancelStep(ctx context.Context, s *plan.Step, err error) error {
	uerr := d.update(ctx, func(r *Record) {
		sr := d.stepRecord(s)
		now := d.now()
		sr.State, sr.Ended, sr.Error = Cancelled, &now, d.mask(err.Error())
		d.event(EventStepCancelled, s.ID, sr.Attempts, err.Error())
		if r.Failure == nil {
			r.Failure = &Failure{StepID: s.ID}
		}
	})
	return errors.Join(err, uerr)
}

func outputFileName(id string, attempt int) string {
	r := strings.NewReplacer("/", "_", ":", "_", "[", "_", "]", "_", "*", "_")
	return fmt.Sprintf("%s.%d.out", r.Replace(id), attempt)
}

// logf writes one of the runner's own lines into the run's log.
func (d *driver) logf(step, format string, args ...any) {
	d.emit(step, "stella", d.mask(fmt.Sprintf(format, args...)))
}

func (d *driver) emit(step, stream, msg string) {
	if d.e.Log == nil {
		return
	}
	d.logMu.Lock()
	defer d.logMu.Unlock()
	d.e.Log(Line{Time: d.now(), RunID: d.rec.ID, PackID: d.pl.Pack.Name + ":" + d.pl.Pack.Version, Tenant: d.rec.Tenant, StepID: step, Stream: stream, Msg: msg})
}

// lineWriter frames a step's stream into log records: each record holds
// the complete lines one write brought (joined by '\n', without the last
// one), so a step printing at full speed costs one record per write, not
// per line; a partial line held from the write before is completed as a
// record of its own. A line that arrives in pieces is cut every maxLine
// bytes, so what is held stays bounded. A line longer than maxLine is cut; a final partial line is
// flushed at the end. The step's last lines are kept for its failure.
func (d *driver) lineWriter(step, stream string) *lineWriter {
	d.logMu.Lock()
	t, ok := d.tails[step]
	if !ok {
		t = &tail{max: d.e.LogTail}
		if t.max == 0 {
			t.max = 20
		}
		d.tails[step] = t
	}
	d.logMu.Unlock()
	return &lineWriter{d: d, step: step, stream: stream, tail: t}
}

// maxLine bounds one log line; longer lines are cut.
const maxLine = 64 << 10

type lineWriter struct {
	d      *driver
	step   string
	stream string
	tail   *tail
	mu     sync.Mutex
	buf    []byte // the partial line held since the last write
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if len(w.buf) > 0 {
		// The held partial line is completed on its own: only it is
		// copied, not the rest of p.
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.record(w.buf[:maxLine])
				w.buf = append(w.buf[:0], w.buf[maxLine:]...)
			}
			return n, nil
		}
		w.buf = append(w.buf, p[:i]...)
		for len(w.buf) > maxLine {
			w.record(w.buf[:maxLine])
			w.buf = append(w.buf[:0], w.buf[maxLine:]...)
		}
		w.record(w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	b := p
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		w.record(b[:i])
		b = b[i+1:]
	}
	for len(b) >= maxLine {
		w.record(b[:maxLine])
		b = b[maxLine:]
	}
	w.buf = append(w.buf[:0], b...)
	return n, nil
}

func (w *lineWriter) record(b []byte) {
	// No copy: b is valid until this returns, as Engine.Log allows; the
	// tail keeps copies of the few lines it keeps.
	msg := unsafe.String(unsafe.SliceData(b), len(b))
	w.tail.addLines(msg)
	w.d.emit(w.step, w.stream, msg)
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.record(w.buf)
		w.buf = nil
	}
}

// tail keeps the last lines of a step's output.
type tail struct {
	mu  sync.Mutex
	max int
	buf []string
}

// addLines keeps the last lines of msg (lines joined by '\n'); only
// those are looked at, however long msg is.
func (t *tail) addLines(msg string) {
	var last []string
	for end := len(msg); len(last) < t.max; {
		i := strings.LastIndexByte(msg[:end], '\n')
		last = append(last, strings.Clone(strings.TrimSuffix(msg[i+1:end], "\r")))
		if i < 0 {
			break
		}
		end = i
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(last) - 1; i >= 0; i-- {
		t.buf = append(t.buf, last[i])
	}
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.buf...)
}

// limitValue renders the pack's value of a limit for a message.
func limitValue(l pack.Limits, name string) string {
	switch name {
	case "memoryMiB":
		return fmt.Sprintf("%d MiB", l.MemoryMiB)
	case "pids":
		return fmt.Sprintf("%d processes", l.Pids)
	case "cpu":
		return fmt.Sprintf("%g CPUs", l.CPU)
	case "timeout":
		return l.Timeout.String()
	}
	return name
}

// maxBlockedEvents bounds the timeline events one attempt's refused
// destinations add; every refusal is still counted.
const maxBlockedEvents = 100

// blockedReporter records each network destination the isolation refused
// a step: an ERR_PACK_NETWORK_BLOCKED line in its log and an event in the
// timeline (the first maxBlockedEvents), and a count.
type blockedReporter struct {
	d       *driver
	ctx     context.Context
	s       *plan.Step
	attempt int
	mu      sync.Mutex
	n       int
}

func (d *driver) blockedReporter(ctx context.Context, s *plan.Step, attempt int) *blockedReporter {
	return &blockedReporter{d: d, ctx: ctx, s: s, attempt: attempt}
}

// BlockedCode is the code of a refused network destination in a run's log
// and timeline.
const BlockedCode = "ERR_PACK_NETWORK_BLOCKED"

func (b *blockedReporter) report(dest, reason string) {
	b.mu.Lock()
	b.n++
	n := b.n
	b.mu.Unlock()
	msg := fmt.Sprintf("%s: step %s: %s: %s", BlockedCode, b.s.ID, dest, reason)
	b.d.logf(b.s.ID, "%s", msg)
	if n <= maxBlockedEvents {
		b.d.updateSoon(b.ctx, func(r *Record) { b.d.event(EventNetworkBlocked, b.s.ID, b.attempt, msg) })
	}
}

func (b *blockedReporter) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
