package runs

import (
	"fmt"
	"sort"

	"stellaops.io/stella/run"
)

// StepOrder returns the ids of a run's steps in the order they started
// (steps not started last, by id).
func StepOrder(rec *run.Record) []string {
	ids := make([]string, 0, len(rec.Steps))
	for id := range rec.Steps {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := rec.Steps[ids[i]], rec.Steps[ids[j]]
		switch {
		case a.Started != nil && b.Started != nil && !a.Started.Equal(*b.Started):
			return a.Started.Before(*b.Started)
		case (a.Started == nil) != (b.Started == nil):
			return a.Started != nil
		}
		return ids[i] < ids[j]
	})
	return ids
}

// Next returns the commands an operator runs next for a run in its
// state, and the gate it waits at (awaiting-approval only): the `next`
// lines of `stella pack run` and the run console show these same
// commands.
func Next(rec *run.Record) (gate string, next []string) {
	next = []string{}
	switch rec.State {
	case run.Succeeded:
		next = append(next, "stella pack runs show "+rec.ID)
	case run.AwaitingApproval:
		for _, id := range StepOrder(rec) {
			if sr := rec.Steps[id]; sr.State == run.AwaitingApproval && sr.Gate != nil {
				gate = id
				break
			}
		}
		next = append(next,
			fmt.Sprintf("stella pack approve --run %s --gate %s --key KEY --comment '...'", rec.ID, gate),
			fmt.Sprintf("stella pack approve --offline-request --run %s --gate %s -o request.stella.tar", rec.ID, gate),
			"stella pack runs resume --run "+rec.ID)
	case run.Paused:
		next = append(next, "stella pack runs resume --run "+rec.ID)
	case run.Failed:
		if rec.Failure != nil && rec.Failure.StepID != "" {
			next = append(next, fmt.Sprintf("stella pack runs logs %s --step %s", rec.ID, rec.Failure.StepID))
		}
		next = append(next, "stella pack runs resume --run "+rec.ID)
	default:
		next = append(next, "stella pack runs show "+rec.ID)
	}
	return gate, next
}
