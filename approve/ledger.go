package approve

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/canonical"
)

// Event is what a ledger entry records.
type Event string

// Ledger events.
const (
	EventRequest  Event = "request"  // a request was issued
	EventDecision Event = "decision" // a response was accepted
	EventRefusal  Event = "refusal"  // a response was refused
	EventExpiry   Event = "expiry"   // a pending request was seen past its expiry
	// EventVoid: an accepted approval was seen no longer counting (its key
	// revoked or removed, its role or tenant withdrawn, ...); Reason says
	// why. It stays void.
	EventVoid Event = "void"
)

// Entry is one ledger entry. Every field is always present in its JSON
// (empty strings where it does not apply) except Hash, which is the
// "sha256:<hex>" of the RFC 8785 canonical JSON of the entry without Hash.
// Prev is the Hash of the entry before it ("" for the first).
type Entry struct {
	Seq            uint64        `json:"seq"`
	Time           time.Time     `json:"time"` // UTC, whole seconds
	Event          Event         `json:"event"`
	Tenant         string        `json:"tenant"`
	PlanHash       digest.Digest `json:"planHash"`
	Gate           string        `json:"gate"`
	RequestDigest  digest.Digest `json:"requestDigest"`
	ResponseDigest digest.Digest `json:"responseDigest"`
	KeyID          string        `json:"keyId"`
	Decision       string        `json:"decision"`
	Reason         string        `json:"reason"`
	Prev           string        `json:"prev"`
	Hash           string        `json:"hash,omitempty"`
}

// ComputeHash returns the hash the entry must carry: sha256 over the
// canonical JSON of the entry without its Hash.
func (e Entry) ComputeHash() (string, error) {
	e.Hash = ""
	b, err := canonical.Marshal(e)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Canonical returns the entry's stored form: its canonical JSON, Hash
// included. Evidence carries entries in this form.
func (e Entry) Canonical() ([]byte, error) { return canonical.Marshal(e) }

// ledgerHead remembers the last entry, so removing entries from the end is
// detected too.
type ledgerHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

const headKey = "ledger.head"

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// appendEntry appends e to the ledger in tx, continuing from the recorded
// head (so an entry removed from the end leaves a visible gap), and
// returns it with Seq, Prev and Hash set.
func appendEntry(tx cache.RecordTx, e Entry) (Entry, error) {
	var head ledgerHead
	ok, err := get(tx, bucketMeta, headKey, &head)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		// No head: start after whatever is there (an empty ledger normally).
		if k, v := tx.Last(bucketLedger); k != nil {
			var last Entry
			if json.Unmarshal(v, &last) == nil {
				head = ledgerHead{Seq: binary.BigEndian.Uint64(k), Hash: last.Hash}
			}
		}
	}
	e.Seq = head.Seq + 1
	e.Prev = head.Hash
	e.Time = utc(e.Time)
	if e.Hash, err = e.ComputeHash(); err != nil {
		return Entry{}, err
	}
	b, err := e.Canonical()
	if err != nil {
		return Entry{}, err
	}
	if err := tx.Put(bucketLedger, seqKey(e.Seq), b); err != nil {
		return Entry{}, err
	}
	return e, put(tx, bucketMeta, headKey, ledgerHead{Seq: e.Seq, Hash: e.Hash})
}

// Ledger returns every ledger entry in order. An entry that cannot be
// decoded is ErrRecordCorrupt; other damage is VerifyLedger's to report.
func Ledger(ctx context.Context, st *cache.Store) ([]Entry, error) {
	var out []Entry
	err := view(ctx, st, func(tx cache.RecordTx) error {
		return tx.ForEach(bucketLedger, nil, func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("ledger entry %x: %w: %v", k, ErrRecordCorrupt, err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// expiriesLogged returns the requests that have an expiry entry in the
// ledger.
func expiriesLogged(tx cache.RecordTx) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	err := tx.ForEach(bucketLedger, nil, func(_, v []byte) error {
		var e struct {
			Event         Event         `json:"event"`
			RequestDigest digest.Digest `json:"requestDigest"`
		}
		// An undecodable entry is VerifyLedger's to report; at worst an
		// expiry it recorded is recorded again.
		if json.Unmarshal(v, &e) == nil && e.Event == EventExpiry {
			out[e.RequestDigest] = true
		}
		return nil
	})
	return out, err
}

// Problem is one finding of VerifyLedger, in the cache's report format.
type Problem = cache.Problem

// LedgerSource is the Source of ledger problems (and the VerifyHook name).
const LedgerSource = "approve.ledger"

// Problem codes of VerifyLedger.
const (
	ProblemEntryInvalid = "ledger-entry-invalid"    // the entry cannot be decoded
	ProblemEntryAltered = "ledger-entry-altered"    // the entry does not hash to its hash
	ProblemEntryMissing = "ledger-entry-missing"    // a gap in the sequence numbers
	ProblemEntryOrder   = "ledger-entry-moved"      // an entry's seq differs from its position
	ProblemChainBroken  = "ledger-chain-broken"     // prev differs from the previous entry's hash
	ProblemHeadMismatch = "ledger-head-mismatch"    // the last entry is not the recorded head
	ProblemHeadInvalid  = "ledger-head-invalid"     // the recorded head cannot be decoded
	ProblemRecord       = "approval-record-invalid" // a request, gate or plan record cannot be decoded
)

// VerifyLedger checks the hash chain of the ledger: every entry hashes to
// its hash, sequence numbers run 1, 2, 3... without gap and each entry
// sits under its own number, each prev is the previous entry's hash, and
// the last entry is the recorded head. It returns what is wrong (nothing
// when the ledger is intact); the error is for a failure to check at all.
func VerifyLedger(ctx context.Context, st *cache.Store) ([]Problem, error) {
	var out []Problem
	err := view(ctx, st, func(tx cache.RecordTx) error {
		out = verifyLedgerTx(tx)
		return nil
	})
	return out, err
}

// VerifyHook returns the ledger check as a cache.VerifyHook, so that
// cache.Store.Verify (stella cache verify) reports ledger damage too.
func VerifyHook() cache.VerifyHook {
	return cache.VerifyHook{
		Name: LedgerSource,
		Check: func(ctx context.Context, st *cache.Store) ([]cache.Problem, error) {
			return VerifyLedger(ctx, st)
		},
	}
}

func verifyLedgerTx(tx cache.RecordTx) []Problem {
	var out []Problem
	bad := func(object, problem, expected, actual string) {
		out = append(out, Problem{Severity: cache.SeverityError, Source: LedgerSource, Object: object,
			Problem: problem, Expected: expected, Actual: actual})
	}
	for _, name := range []string{bucketPlans, bucketRequests, bucketGates} {
		_ = tx.ForEach(name, nil, func(k, v []byte) error {
			var m map[string]any
			if json.Unmarshal(v, &m) != nil {
				bad(namespace+"."+name+" "+string(k), ProblemRecord, "", "")
			}
			return nil
		})
	}
	var (
		prevSeq  uint64
		prevHash string
		have     bool
	)
	_ = tx.ForEach(bucketLedger, nil, func(k, v []byte) error {
		obj := "ledger entry ?"
		var pos uint64
		if len(k) == 8 {
			pos = binary.BigEndian.Uint64(k)
			obj = fmt.Sprintf("ledger entry %d", pos)
		}
		var e Entry
		if len(k) != 8 || json.Unmarshal(v, &e) != nil {
			bad(obj, ProblemEntryInvalid, "", "")
			have, prevSeq, prevHash = true, pos, ""
			return nil
		}
		if e.Seq != pos {
			bad(obj, ProblemEntryOrder, fmt.Sprint(pos), fmt.Sprint(e.Seq))
		}
		if want := prevSeq + 1; pos != want {
			bad(obj, ProblemEntryMissing, fmt.Sprintf("entry %d", want), fmt.Sprintf("entry %d", pos))
		}
		if h, err := e.ComputeHash(); err != nil || h != e.Hash {
			bad(obj, ProblemEntryAltered, h, e.Hash)
		} else if b, err := e.Canonical(); err != nil || string(b) != string(v) {
			bad(obj, ProblemEntryAltered, "canonical entry", "other bytes")
		}
		if e.Prev != prevHash {
			bad(obj, ProblemChainBroken, prevHash, e.Prev)
		}
		have, prevSeq, prevHash = true, pos, e.Hash
		return nil
	})
	var head ledgerHead
	ok, err := get(tx, bucketMeta, headKey, &head)
	switch {
	case err != nil:
		bad("ledger head", ProblemHeadInvalid, "", "")
	case !ok && have:
		bad("ledger head", ProblemHeadMismatch, fmt.Sprintf("entry %d", prevSeq), "no head")
	case ok && (head.Seq != prevSeq || head.Hash != prevHash):
		bad("ledger head", ProblemHeadMismatch, fmt.Sprintf("entry %d %s", head.Seq, head.Hash),
			fmt.Sprintf("entry %d %s", prevSeq, prevHash))
	}
	return out
}
