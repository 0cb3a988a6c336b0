package approve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/canonical"
	"stellaops.io/stella/integrity"
	"stellaops.io/stella/plans"
)

// namespace is this package's record namespace in the cache (see doc.go).
const namespace = "approve"

// Buckets of the namespace; in the index, "approve.<bucket>".
const (
	bucketPlans    = "plans"    // package plans' saved plans; VerifyLedger checks they decode
	bucketRequests = "requests" // request manifest digest → requestRecord
	bucketGates    = "gates"    // tenant 0x00 plan hash 0x00 gate → gateRecord
	bucketLedger   = "ledger"   // big-endian seq → canonical Entry
	bucketMeta     = "meta"     // "ledger.head" → ledgerHead
	bucketVoids    = "voids"    // response manifest digest → why its approval no longer counts (its void entry's reason)
)

// Bounds on what this package reads from untrusted sources.
const (
	// MaxRequestSize bounds the request JSON layer.
	MaxRequestSize = 64 << 10
	// MaxPlanSize bounds a plan carried in a request, as it bounds a
	// saved plan.
	MaxPlanSize = plans.MaxSize
	// MaxCommentSize bounds a decision's comment.
	MaxCommentSize = 4 << 10
	// maxRequester bounds the requester string.
	maxRequester = 256
	// maxGateID bounds a gate id.
	maxGateID = 1024
	// maxMinApprovers bounds a gate's approver count.
	maxMinApprovers = 100
	// maxExpiresAfter mirrors the pack format's bound on expiresAfter.
	maxExpiresAfter = 90 * 24 * time.Hour
)

// tenantRE is the tenant syntax of the trust store.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// get reads a JSON record; a missing bucket or key is (false, nil).
func get(tx cache.RecordTx, bucket, key string, v any) (bool, error) {
	raw := tx.Get(bucket, []byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("record %s.%s/%s: %w: %v", namespace, bucket, key, ErrRecordCorrupt, err)
	}
	return true, nil
}

func put(tx cache.RecordTx, bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, []byte(key), raw)
}

// update runs fn in a write transaction of this package's records.
func update(ctx context.Context, st *cache.Store, fn func(tx cache.RecordTx) error) error {
	return st.Records(namespace).Update(ctx, fn)
}

// view runs fn in a read-only transaction of this package's records.
func view(ctx context.Context, st *cache.Store, fn func(tx cache.RecordTx) error) error {
	return st.Records(namespace).View(ctx, fn)
}

// decodeCanonical decodes data into v strictly: data must be RFC 8785
// canonical JSON (so valid UTF-8, no duplicate names), hold no unknown
// field, and re-encode to exactly the same bytes (so every field is
// present, names match exactly and times and numbers are in their one
// canonical form).
func decodeCanonical(data []byte, v any) error {
	canon, err := canonical.Transform(data)
	if err != nil {
		return fmt.Errorf("not valid json: %v", err)
	}
	if !bytes.Equal(canon, data) {
		return fmt.Errorf("not RFC 8785 canonical json")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	again, err := canonical.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, data) {
		return fmt.Errorf("fields missing, misspelt or not in canonical form")
	}
	return nil
}

// utc normalizes a time the way every stored and signed time is kept: UTC,
// whole seconds.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return utc(t)
}

// wholeUTC reports whether t is already in stored form.
func wholeUTC(t time.Time) bool { return t.Location() == time.UTC && t.Nanosecond() == 0 }

// checkText accepts printable UTF-8 of at most max bytes; newlines and tabs
// only when multiline.
func checkText(what, s string, max int, multiline bool) error {
	if len(s) > max {
		return fmt.Errorf("%s of %d bytes exceeds %d: %w", what, len(s), max, ErrInvalidInput)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8: %w", what, ErrInvalidInput)
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Errorf("%s holds control character %U: %w", what, r, ErrInvalidInput)
		}
	}
	return nil
}

func checkTenant(tenant string) error {
	if tenant != "" && !tenantRE.MatchString(tenant) {
		return fmt.Errorf("tenant %q: %w: letters, digits, '.', '_' and '-', at most 128", tenant, ErrInvalidInput)
	}
	return nil
}

// fetchBlob reads the blob d (at most limit bytes) from src and checks its
// size and digest before returning it.
func fetchBlob(ctx context.Context, src content.Fetcher, d ocispec.Descriptor, limit int64, invalid error) ([]byte, error) {
	if d.Size < 0 || d.Size > limit {
		return nil, fmt.Errorf("blob %s: %w: %d bytes, limit %d", d.Digest, invalid, d.Size, limit)
	}
	if err := integrity.CheckSHA256(d.Digest); err != nil {
		return nil, fmt.Errorf("blob %q: %w: %v", d.Digest, invalid, err)
	}
	rc, err := src.Fetch(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		return nil, fmt.Errorf("blob %s: %w: content differs from its descriptor", d.Digest, invalid)
	}
	return b, nil
}

// emptyConfig is the OCI empty JSON config, without its inline data.
func emptyConfig() ocispec.Descriptor {
	d := ocispec.DescriptorEmptyJSON
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

func isEmptyConfig(d ocispec.Descriptor) bool {
	e := emptyConfig()
	return d.MediaType == e.MediaType && d.Digest == e.Digest && d.Size == e.Size
}

// plainDesc keeps what identifies content.
func plainDesc(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}
