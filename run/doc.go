// Package run is stella's run engine: it executes a plan (package plan) step
// by step and records every transition durably before the next action.
//
// The engine depends only on interfaces for what touches the world: an
// Executor starts one command (the process executor, and later the isolated
// one, implement it), a Store makes a run record durable, Gates answers
// whether an approval gate is satisfied, and Expand turns a deferred map or
// loop into its iterations with the plan's own code. So the engine itself
// never prints, never reads the environment and never opens a socket.
//
// States follow the runbook. A run is running, awaiting-approval, paused,
// succeeded, failed, cancelled or expired; a step is pending, running,
// retrying, succeeded, failed (the command ran and exited non-zero), errored
// (could not start, timed out, runner lost), skipped, cancelled or
// awaiting-approval. Succeeded and skipped steps are never run again: a
// resumed run walks the same plan and passes over them, reusing their
// outputs. A step found running when a run is resumed was in flight when its
// runner died: it is recorded errored (runner lost) and runs again only if
// the retry policy allows.
//
// Every change of a run's record goes through Store.Save, which returns only
// once the change is durable; the engine starts no command before the
// record saying it is about to is saved, and marks no step succeeded before
// its outputs are saved with it.
//
// Chaos faults (chaos.go) are data of the record (Record.Chaos): the
// engine injects each where it applies (before a step, after it, in its
// sandbox, at a gate), records a pack.chaos.injected event, and marks it
// fired in the same save, so a resumed run never injects a step fault twice.
// kill-after calls Engine.Kill only once that save is durable.
package run
