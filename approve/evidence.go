package approve

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
)

// Recorded is an accepted decision as evidence carries it: the response
// envelope exactly as signed, with what the cache recorded of it.
type Recorded struct {
	Gate      string
	Request   digest.Digest // request manifest
	Response  digest.Digest // response manifest
	KeyID     string
	KeyName   string
	Decision  Verdict
	Imported  time.Time
	Envelope  []byte // the DSSE envelope, as accepted
	SignedAt  time.Time
	ExpiresAt time.Time
}

// Decisions returns the decisions accepted for one gate of one plan for
// one tenant, in the order they were accepted, each with its envelope; none
// (and no error) when no approval was ever requested for the gate. It
// records nothing, not even expiries it could observe.
func Decisions(ctx context.Context, st *cache.Store, tenant string, planHash digest.Digest, gate string) ([]Recorded, error) {
	var out []Recorded
	err := view(ctx, st, func(tx cache.RecordTx) error {
		g, ok, err := loadGate(tx, tenant, planHash, gate)
		if err != nil || !ok {
			return err
		}
		for _, d := range g.Decisions {
			out = append(out, Recorded{Gate: gate, Request: d.Request, Response: d.Response, KeyID: d.KeyID,
				KeyName: d.KeyName, Decision: d.Decision, Imported: d.Imported, Envelope: d.Envelope,
				SignedAt: d.SignedAt, ExpiresAt: d.ExpiresAt})
		}
		return nil
	})
	return out, err
}
