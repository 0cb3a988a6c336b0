// Package secret decides where each secret reference of a plan comes from,
// by one rule shared by planning (Check: does it resolve, and from where)
// and running (Resolve: its value).
//
// The rule: a source "env:NAME" is the environment variable NAME, and a
// source "vault:NAME" is the vault secret NAME. In sealed mode only the
// sealed vault counts: env: sources are refused (ErrSealedSource), whatever
// the environment holds. An empty environment variable does not resolve.
//
// The package never reads the environment, opens a vault or prints: the
// caller passes both in Sources. Values never appear in a Status or an
// error.
package secret

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"stellaops.io/stella/plan"
	"stellaops.io/stella/vault"
)

var (
	// ErrMissing: a secret does not resolve (for Check: a required one).
	ErrMissing = errors.New("required secret missing")
	// ErrSealedSource: sealed mode forbids the secret's source (env:).
	ErrSealedSource = errors.New("secret source not allowed in sealed mode")
)

// Resolutions a Status reports.
const (
	FromVault     = "vault"          // the vault holds it
	FromEnv       = "env"            // the environment variable is set
	Missing       = "missing"        // the source does not hold it
	Unchecked     = "unchecked"      // no vault to check against (see Sources.VaultNote)
	RefusedSealed = "refused-sealed" // sealed mode refuses the source
)

// EnvPrefix starts a secret source naming an environment variable.
const EnvPrefix = "env:"

// Getter is the vault secrets are resolved against; *vault.Vault is one.
type Getter interface {
	// Get returns the named secret. A secret that is not there is an
	// error wrapping vault.ErrSecretNotFound; any other error means the
	// vault could not be read.
	Get(name string) (vault.Secret, error)
}

// Sources is where secrets may come from.
type Sources struct {
	// Sealed restricts sources to the (sealed) vault.
	Sealed bool
	// Getenv looks up an environment variable; nil means an empty
	// environment. The caller passes os.Getenv or its own view of it.
	Getenv func(string) string
	// Vault is the opened vault, or nil when there is none to use: a
	// planner may go on without one (outside sealed mode, a missing or
	// locked vault only leaves vault secrets unchecked), so nil is not an
	// error for Check. Resolve of a vault secret needs it.
	Vault Getter
	// VaultNote says why Vault is nil; Check puts it on unchecked secrets.
	VaultNote string
}

// Status is one secret reference and whether it resolves, and from where —
// never its value.
type Status struct {
	plan.Secret
	Resolves   *bool  `json:"resolves"` // null when not checked
	Resolution string `json:"resolution"`
	Note       string `json:"note,omitempty"`
}

// sealedNote is the note of an env: secret refused in sealed mode.
const sealedNote = "sealed mode takes secrets only from the sealed vault"

// lookup applies the rule to one source. It returns the resolution and,
// when it resolves and want is set, the value. err is only for a vault
// that could not be read.
func (src Sources) lookup(source string, want bool) (string, vault.Value, error) {
	if name, ok := strings.CutPrefix(source, EnvPrefix); ok {
		if src.Sealed {
			return RefusedSealed, vault.Value{}, nil
		}
		v := ""
		if src.Getenv != nil {
			v = src.Getenv(name)
		}
		if v == "" {
			return Missing, vault.Value{}, nil
		}
		if want {
			return FromEnv, vault.NewValue([]byte(v)), nil
		}
		return FromEnv, vault.Value{}, nil
	}
	name, _ := vault.ParseRef(source)
	if src.Vault == nil {
		return Unchecked, vault.Value{}, nil
	}
	s, err := src.Vault.Get(name)
	switch {
	case errors.Is(err, vault.ErrSecretNotFound):
		return Missing, vault.Value{}, nil
	case err != nil:
		return "", vault.Value{}, err
	}
	if !want {
		s.Value.Wipe()
		return FromVault, vault.Value{}, nil
	}
	return FromVault, s.Value, nil
}

// Check reports for each secret whether it resolves under src, in order.
// Secrets of a nil vault are Unchecked with src.VaultNote. The error is,
// sharpest first: a required env: secret in sealed mode (ErrSealedSource,
// naming each), a required secret that does not resolve (ErrMissing,
// naming each with the steps that use it), or a vault read failure (then
// no statuses). With ErrSealedSource or ErrMissing the statuses are
// returned too.
func Check(ctx context.Context, secrets []plan.Secret, src Sources) ([]Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(secrets))
	var missing, sealed []string
	for _, sec := range secrets {
		how, _, err := src.lookup(sec.Source, false)
		if err != nil {
			return nil, fmt.Errorf("secret %s (%s): %w", sec.Name, sec.Source, err)
		}
		st := Status{Secret: sec, Resolution: how}
		switch how {
		case Unchecked:
			st.Note = src.VaultNote
		case RefusedSealed:
			st.Note = sealedNote
			fallthrough
		default:
			ok := how == FromVault || how == FromEnv
			st.Resolves = &ok
		}
		if sec.Required {
			switch how {
			case RefusedSealed:
				sealed = append(sealed, describe(sec))
			case Missing:
				missing = append(missing, describe(sec))
			}
		}
		out = append(out, st)
	}
	if len(sealed) > 0 {
		return out, fmt.Errorf("required secrets from the environment in sealed mode: %s: %w", strings.Join(sealed, "; "), ErrSealedSource)
	}
	if len(missing) > 0 {
		return out, fmt.Errorf("%s: %w", strings.Join(missing, "; "), ErrMissing)
	}
	return out, nil
}

// Resolve returns the value of one secret under the same rule as Check.
// ErrSealedSource: sealed mode refuses its source. ErrMissing: the source
// does not hold it, required or not (the caller decides whether an
// optional secret may be left out). A vault secret with a nil src.Vault is
// an error wrapping vault.ErrVaultNotFound. The caller should Wipe the
// value when done.
func Resolve(ctx context.Context, sec plan.Secret, src Sources) (vault.Value, error) {
	if err := ctx.Err(); err != nil {
		return vault.Value{}, err
	}
	how, v, err := src.lookup(sec.Source, true)
	if err != nil {
		return vault.Value{}, fmt.Errorf("secret %s (%s): %w", sec.Name, sec.Source, err)
	}
	switch how {
	case FromEnv, FromVault:
		return v, nil
	case RefusedSealed:
		return vault.Value{}, fmt.Errorf("secret %s: %w", describe(sec), ErrSealedSource)
	case Unchecked:
		note := src.VaultNote
		if note == "" {
			note = "no vault given"
		}
		return vault.Value{}, fmt.Errorf("secret %s: %s: %w", describe(sec), note, vault.ErrVaultNotFound)
	}
	return vault.Value{}, fmt.Errorf("secret %s: %w", describe(sec), ErrMissing)
}

// describe names a secret, its source and its steps, for errors.
func describe(sec plan.Secret) string {
	return fmt.Sprintf("%s (%s, used by %s)", sec.Name, sec.Source, StepsOrNone(sec.Steps))
}

// StepsOrNone renders the steps that use a secret: "steps a, b" or "no step".
func StepsOrNone(steps []string) string {
	if len(steps) == 0 {
		return "no step"
	}
	return "steps " + strings.Join(steps, ", ")
}
