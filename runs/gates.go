package runs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/run"
	"stellaops.io/stella/trust"
)

// Gates answers a run's approval gates from the decisions package approve
// records for (tenant, plan hash, gate) (run.Gates). A gate nobody asked to
// approve yet waits for the gate's window (expiresAfter, from when the run
// started waiting); one with requests follows approve's state: satisfied is
// approved, rejected is rejected, and expired (no live request, not enough
// live approvals) is expired once the run's own window (expiresAfter from
// when it started waiting) has passed too. Approvals count against Trust,
// the current trust store (approve.Gate): one whose key was revoked or
// removed since no longer lets the run pass, and the gate's message says
// so.
type Gates struct {
	Cache *cache.Store
	Trust *trust.Store // required
	Now   func() time.Time
}

var _ run.Gates = Gates{}

// Check implements run.Gates.
func (g Gates) Check(ctx context.Context, rec *run.Record, a plan.Approval, since time.Time) (run.GateStatus, error) {
	now := time.Now().UTC()
	if g.Now != nil {
		now = g.Now().UTC()
	}
	window, err := time.ParseDuration(a.ExpiresAfter)
	if err != nil || window <= 0 {
		window = plan.DefaultExpiry
	}
	st := run.GateStatus{State: run.GateWaiting, Required: a.MinApprovers}
	gs, err := approve.Gate(ctx, g.Cache, g.Trust, rec.Tenant, rec.PlanHash.String(), a.Gate, now)
	switch {
	case errors.Is(err, approve.ErrGateNotFound):
		deadline := since.Add(window)
		st.Deadline = &deadline
		if now.After(deadline) {
			st.State = run.GateExpired
			st.Message = fmt.Sprintf("no approval requested within %s", window)
		}
		return st, nil
	case err != nil:
		return st, err
	}
	st.Approved, st.Required = gs.Approvals, gs.Required
	if !gs.Satisfied {
		st.Message = approve.VoidNote(gs.Decisions)
	}
	if !gs.ExpiresAt.IsZero() {
		t := gs.ExpiresAt
		st.Deadline = &t
	}
	switch {
	case gs.Satisfied:
		st.State = run.GateApproved
	case gs.State == approve.StateRejected:
		st.State = run.GateRejected
		for _, d := range gs.Decisions {
			if d.Decision == approve.Reject {
				st.Message = fmt.Sprintf("rejected by %s: %s", d.KeyName, d.Comment)
			}
		}
	case gs.State == approve.StateExpired:
		// Earlier requests for this plan's gate lapsed; a run that started
		// waiting within the gate's window still has its own window.
		deadline := since.Add(window)
		st.Deadline = &deadline
		if now.After(deadline) {
			st.State = run.GateExpired
			st.Message = "the approval window passed"
		}
	}
	return st, nil
}
