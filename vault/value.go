package vault

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what every rendering of a Value shows.
const redacted = "[redacted]"

// Value holds secret bytes. It never renders them: String, GoString, every
// fmt verb, JSON, text and slog output show "[redacted]". Reveal is the only
// way to the bytes.
type Value struct {
	b []byte
}

// Reveal returns the secret bytes. The slice belongs to this Value (Get and
// Key return a fresh copy each call), so the caller may Wipe it when done.
func (v Value) Reveal() []byte { return v.b }

// Len returns the length of the secret in bytes.
func (v Value) Len() int { return len(v.b) }

// Wipe overwrites the secret bytes with zeros.
func (v Value) Wipe() { clear(v.b) }

// String returns "[redacted]".
func (v Value) String() string { return redacted }

// GoString returns a redacted Go-syntax form.
func (v Value) GoString() string { return "vault.Value{" + redacted + "}" }

// Format renders "[redacted]" for every verb, including %x, %q and %#v.
func (v Value) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, v.GoString())
		return
	}
	_, _ = io.WriteString(f, redacted)
}

// MarshalJSON renders the JSON string "[redacted]".
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText renders "[redacted]".
func (v Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue makes slog render "[redacted]".
func (v Value) LogValue() slog.Value { return slog.StringValue(redacted) }

// cloneValue returns a Value holding a copy of b.
func cloneValue(b []byte) Value {
	return Value{b: append([]byte(nil), b...)}
}

// NewValue returns a Value holding a copy of b, for a secret that comes
// from elsewhere than the vault (such as the environment) but must be
// handled as carefully.
func NewValue(b []byte) Value { return cloneValue(b) }
