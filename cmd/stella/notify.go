package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/backoff"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/notify"
	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// Notification defaults (docs/operations/notifications.md).
const (
	defaultDeliverWithin = 10 * time.Second
	defaultGateWaitAlert = 30 * time.Minute
	// EventApprovalOverdue is the runbook's gate-wait alert.
	eventApprovalOverdue = "pack.approval.overdue"
)

func (s *session) notifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "notify",
		Usage: "deliver the notification spool to the configured hooks; list dead letters",
		Description: `Every pack.run.*, pack.approval.* and pack.chaos.injected event is appended to
<home>/notify/spool.ndjson and delivered to the hooks of the config's notify block, at the end
of the command that saw it (within notify.deliverWithin) and by ` + "`stella notify deliver`" + `.
Each hook gets each event once; an event a hook keeps refusing goes to
<home>/notify/dead-letter.ndjson (docs/operations/notifications.md). Events every hook has
taken are kept notify.keep (7 days) and then compacted away, by ` + "`stella notify deliver`" + `
and whenever the spool is over 4 MiB.

Examples:
   stella notify deliver
   stella notify dead-letters`,
		Subcommands: []*cli.Command{
			{
				Name:  "deliver",
				Usage: "raise due gate-wait alerts, deliver what the hooks have not taken yet and compact the spool (exit 10 when some event was not delivered)",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "within", Usage: "give up (keeping each hook's place) after this long", Value: time.Minute},
				},
				Action: action(s.notifyDeliver),
			},
			{
				Name:   "dead-letters",
				Usage:  "list the events a hook never took, with the hook, attempts and last error",
				Action: action(s.notifyDeadLetters),
			},
		},
	}
}

func (s *session) notifyDir() string { return filepath.Join(s.home, "notify") }

// spool is the home's notification spool with the configured hooks.
func (s *session) spool() *notify.Spool {
	nc := s.config.Notify
	opts := notify.Options{Hooks: nc.Hooks, MaxAttempts: nc.MaxAttempts, Keep: nc.Keep, Now: s.now,
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}}
	if nc.RetryInitial > 0 {
		opts.Backoff = backoff.Policy{Initial: nc.RetryInitial, Max: nc.RetryMax, Jitter: 0.1}
	}
	if s.sealed {
		opts.Allow = sealedAllow("notify.sealedAllowlist", nc.SealedAllowlist)
	}
	return notify.Open(s.notifyDir(), opts)
}

// sealedAllow is what sealed mode permits of the hosts a config list
// (named by key, as in the config) names: exactly those, host or
// host:port as written in a URL, case aside.
func sealedAllow(key string, allowed []string) func(host string) error {
	return func(host string) error {
		for _, a := range allowed {
			if strings.EqualFold(a, host) {
				return nil
			}
		}
		return fmt.Errorf("host %s is not in %s", host, key)
	}
}

// runEvents are the notifications of a run's timeline: each event once,
// by its place in the timeline, and the gate-wait alert of every gate the
// run has waited at longer than notify.gateWaitAlert.
func (s *session) runEvents(rec *run.Record) []notify.Event {
	packID := rec.Pack.Name + ":" + rec.Pack.Version
	var out []notify.Event
	for i, e := range rec.Timeline {
		if !strings.HasPrefix(e.Type, "pack.run.") && !strings.HasPrefix(e.Type, "pack.chaos.") {
			continue
		}
		ev := notify.Event{ID: fmt.Sprintf("%s#%d", rec.ID, i), Type: e.Type, Time: e.Time, RunID: rec.ID, PackID: packID,
			Tenant: rec.Tenant, StepID: e.StepID, Message: e.Message}
		if sr := rec.Steps[e.StepID]; sr != nil && sr.Gate != nil {
			ev.Gate = e.StepID
		}
		out = append(out, ev)
	}
	limit := s.config.Notify.GateWaitAlert
	if limit <= 0 {
		limit = defaultGateWaitAlert
	}
	now := s.now().UTC()
	for _, id := range sortedStepIDs(rec) {
		sr := rec.Steps[id]
		if rec.State != run.AwaitingApproval || sr.Gate == nil || sr.Gate.State != run.GateWaiting || sr.Gate.Since == nil {
			continue
		}
		// The alert's time is when the gate became overdue, the same each
		// time it is raised, so once compacted away it is not spooled again.
		if waited := now.Sub(*sr.Gate.Since); waited > limit {
			out = append(out, notify.Event{ID: fmt.Sprintf("%s#overdue#%s#%s", rec.ID, id, sr.Gate.Since.UTC().Format(time.RFC3339Nano)),
				Type: eventApprovalOverdue, Time: sr.Gate.Since.Add(limit).UTC(), RunID: rec.ID, PackID: packID, Tenant: rec.Tenant, StepID: id, Gate: id,
				Message: fmt.Sprintf("gate %s has waited %s (alert over %s)", id, waited.Round(time.Second), limit)})
		}
	}
	return out
}

// notifyEvents spools events and, when hooks are configured, delivers
// within notify.deliverWithin. A notification never fails the command
// that raised it: what goes wrong is a warning (the events stay spooled).
func (s *session) notifyEvents(ctx context.Context, events []notify.Event) {
	sp := s.spool()
	if err := sp.Append(context.WithoutCancel(ctx), events); err != nil {
		s.warnf("notifications: %v", err)
		return
	}
	if len(s.config.Notify.Hooks) == 0 {
		return
	}
	within := s.config.Notify.DeliverWithin
	if within <= 0 {
		within = defaultDeliverWithin
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), within)
	defer cancel()
	rep, err := sp.Deliver(dctx)
	switch {
	case err != nil:
		s.warnf("notifications: %v", err)
	case rep.Dead > 0:
		s.warnf("notifications: %d event(s) went to %s (stella notify dead-letters)", rep.Dead, sp.DeadLetterPath())
	case rep.Pending > 0:
		s.warnf("notifications: %d event(s) not delivered yet; `stella notify deliver` goes on", rep.Pending)
	}
}

// ledgerEvents are the notifications of the approval ledger's entries no
// command raises itself: a response refused at import
// (pack.approval.refused), a request seen past its expiry
// (pack.approval.expired) and an approval that stopped counting, its key
// revoked or its role withdrawn (pack.approval.voided). Each entry once,
// by its hash. The ledger is read whole: one entry per decision.
func (s *session) ledgerEvents(ctx context.Context, st *cache.Store) []notify.Event {
	entries, err := approve.Ledger(ctx, st)
	if err != nil {
		s.warnf("notifications: approval ledger: %v", err)
		return nil
	}
	types := map[approve.Event]string{approve.EventRefusal: "pack.approval.refused", approve.EventExpiry: "pack.approval.expired",
		approve.EventVoid: "pack.approval.voided"}
	var out []notify.Event
	for _, e := range entries {
		typ, ok := types[e.Event]
		if !ok {
			continue
		}
		msg := fmt.Sprintf("%s of gate %s, plan %s", e.Event, e.Gate, e.PlanHash)
		if e.KeyID != "" {
			msg += ", key " + e.KeyID
		}
		if e.Reason != "" {
			msg += ": " + e.Reason
		}
		out = append(out, notify.Event{ID: "approval-ledger:" + e.Hash, Type: typ, Time: e.Time, Tenant: e.Tenant, Gate: e.Gate, Message: msg})
	}
	return out
}

// notifyApproval spools the decision an approval recorded.
func (s *session) notifyApproval(ctx context.Context, o *approve.Outcome) {
	typ := "pack.approval.approved"
	if o.Decision == approve.Reject {
		typ = "pack.approval.rejected"
	}
	s.notifyEvents(ctx, []notify.Event{{ID: "approval:" + o.Response.String(), Type: typ, Time: s.now().UTC(),
		PackID: o.Gate.PackRef, Tenant: o.Gate.Tenant, Gate: o.Gate.Gate,
		Message: fmt.Sprintf("%s by %s for plan %s (%d/%d)", o.Decision, orDash(o.KeyName), o.Gate.PlanHash, o.Gate.Approvals, o.Gate.Required)}})
}

func (s *session) notifyDeliver(ctx context.Context, c *cli.Context) error {
	st, rs, err := s.openRuns(ctx)
	if err != nil {
		return err
	}
	var events []notify.Event
	parked, err := rs.List(ctx, runs.Filter{State: run.AwaitingApproval})
	if err != nil {
		return err
	}
	for _, h := range parked {
		rec, err := rs.Get(ctx, h.ID)
		if err != nil {
			return err
		}
		events = append(events, s.runEvents(rec)...)
	}
	events = append(events, s.ledgerEvents(ctx, st)...)
	sp := s.spool()
	if err := sp.Append(ctx, events); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, c.Duration("within"))
	defer cancel()
	rep, err := sp.Deliver(dctx)
	if err != nil {
		return err
	}
	// Compacting is quick; it gets its own deadline, not what delivery left.
	cctx, ccancel := context.WithTimeout(ctx, c.Duration("within"))
	defer ccancel()
	if err := sp.Compact(cctx); err != nil {
		return err
	}
	if err := s.emit(rep, func(w io.Writer) {
		fmt.Fprintf(w, "delivered %d, failed attempts %d, dead letters %d, pending %d\n", rep.Delivered, rep.Failed, rep.Dead, rep.Pending)
	}); err != nil {
		return err
	}
	// Exit 10 tells a cron job that something was not delivered.
	if rep.Dead > 0 || rep.Pending > 0 {
		return fmt.Errorf("%d event(s) went to the dead letters %s, %d still pending: %w", rep.Dead, sp.DeadLetterPath(), rep.Pending, notify.ErrDelivery)
	}
	return nil
}

func (s *session) notifyDeadLetters(ctx context.Context, _ *cli.Context) error {
	dl, err := notify.DeadLetters(s.notifyDir())
	if err != nil {
		return err
	}
	if dl == nil {
		dl = []notify.DeadLetter{}
	}
	return s.emit(dl, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tHOOK\tEVENT\tRUN\tATTEMPTS\tERROR")
		for _, d := range dl {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", d.Time.UTC().Format(time.RFC3339), display.Line(d.Hook), display.Line(d.Event.Type), display.Line(orDash(d.Event.RunID)), d.Attempts, display.Line(d.Error))
		}
		tw.Flush()
	})
}
