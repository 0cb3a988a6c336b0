package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"stellaops.io/stella/pack"
	"stellaops.io/stella/plan"
	"stellaops.io/stella/redact"
	"stellaops.io/stella/secret"
)

// SecretFileEnv is the environment variable that names the file holding
// secret name for a step: STELLA_SECRET_<NAME>_FILE, NAME in upper case
// with '-' as '_'.
func SecretFileEnv(name string) string {
	return "STELLA_SECRET_" + pack.SecretEnvName(name) + "_FILE"
}

// Secret deliveries (SecretUse.Delivery).
const (
	DeliveryFile = "file"
	DeliveryEnv  = "env"
)

// deliverSecrets resolves the secrets step s receives, adds each value to
// the run's mask, and delivers it: as a 0600 file in the attempt's own
// 0700 folder (named in env by SecretFileEnv), or in the environment
// variable the pack asked for. It returns the folder ("" when the step
// receives no file) and what is recorded of each secret. On error nothing
// is left behind.
func (d *driver) deliverSecrets(ctx context.Context, s *plan.Step, attempt int, env map[string]string) (string, []SecretUse, error) {
	if s.Run == nil || len(s.Run.Secrets) == 0 {
		return "", nil, nil
	}
	if d.e.Secrets == nil || d.e.SecretsDir == "" {
		return "", nil, fmt.Errorf("secret %s: this runner has no source of secrets: %w", s.Run.Secrets[0], secret.ErrMissing)
	}
	dir := filepath.Join(d.e.SecretsDir, strings.TrimSuffix(outputFileName(s.ID, attempt), ".out"))
	if err := os.MkdirAll(d.e.SecretsDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("secrets folder: %w", err)
	}
	if err := destroyFolder(dir); err != nil {
		return "", nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("secrets folder: %w", err)
	}
	var uses []SecretUse
	fail := func(err error) (string, []SecretUse, error) {
		_ = destroyFolder(dir)
		return "", nil, err
	}
	for _, name := range s.Run.Secrets {
		sec, ok := d.secrets[name]
		if !ok {
			return fail(fmt.Errorf("secret %s is not declared by the pack: %w", name, secret.ErrMissing))
		}
		v, err := d.e.Secrets(ctx, sec)
		if errors.Is(err, secret.ErrMissing) && !sec.Required {
			continue
		}
		if err != nil {
			return fail(err)
		}
		if err := d.redact.Add(v); err != nil {
			wipe(v)
			return fail(fmt.Errorf("secret %s (%s): %w (at least %d bytes)", name, sec.Source, err, redact.MinLen))
		}
		use := SecretUse{Name: name, Scope: sec.Scope, Source: sec.Source, Delivery: DeliveryFile}
		if sec.Env != "" {
			env[sec.Env] = string(v)
			use.Delivery = DeliveryEnv
		} else {
			path := filepath.Join(dir, name)
			err := writeSecret(path, v)
			if err != nil {
				wipe(v)
				return fail(fmt.Errorf("secret %s: %w", name, err))
			}
			env[SecretFileEnv(name)] = path
		}
		wipe(v)
		uses = append(uses, use)
	}
	return dir, uses, nil
}

func writeSecret(path string, v []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// DestroySecrets overwrites and removes every secret file under dir (a
// run's SecretsDir) and the folders holding them. A missing dir is not an
// error.
func DestroySecrets(dir string) error {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secrets folder %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := destroyFolder(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// destroyFolder overwrites each regular file under dir with zeros, syncs
// it, and removes dir with all it holds.
func destroyFolder(dir string) error {
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() {
			// The step may have made its folder unreadable.
			return os.Chmod(p, 0o700)
		}
		if !de.Type().IsRegular() {
			return nil
		}
		return overwrite(p)
	})
	if err != nil {
		return fmt.Errorf("destroy secrets in %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("destroy secrets in %s: %w", dir, err)
	}
	return nil
}

func overwrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if os.Chmod(path, 0o600) != nil {
			return err
		}
		if f, err = os.OpenFile(path, os.O_WRONLY, 0); err != nil {
			return err
		}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	zero := make([]byte, 32<<10)
	for left := fi.Size(); left > 0; {
		n := int64(len(zero))
		if left < n {
			n = left
		}
		if _, err := f.Write(zero[:n]); err != nil {
			return err
		}
		left -= n
	}
	return f.Sync()
}

// mask hides every value the run resolved in s.
func (d *driver) mask(s string) string {
	if d.redact == nil {
		return s
	}
	return d.redact.String(s)
}

// maskValue masks every string in an output value (maps, lists, strings).
func (d *driver) maskValue(v any) any {
	switch x := v.(type) {
	case string:
		return d.mask(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[d.mask(k)] = d.maskValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = d.maskValue(e)
		}
		return out
	}
	return v
}

// maskOutputFiles masks in place each file the pack names in
// spec.outputs (path), through the same streaming masker as the logs. A
// file the run did not produce is left alone.
func (d *driver) maskOutputFiles() error {
	if d.redact.Len() == 0 {
		return nil
	}
	for _, o := range d.pl.Outputs {
		if o.Path == "" || !filepath.IsLocal(o.Path) {
			continue
		}
		if err := maskFile(d.redact, filepath.Join(d.e.Work, o.Path)); err != nil {
			return fmt.Errorf("output %s (%s): %w", o.Name, o.Path, err)
		}
	}
	return nil
}

func maskFile(set *redact.Set, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.Mode().IsRegular()) {
		return nil
	}
	if err != nil {
		return err
	}
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mask-*")
	if err != nil {
		return err
	}
	w := set.Writer(tmp)
	_, err = io.Copy(w, in)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Chmod(fi.Mode().Perm())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The unmasked bytes are overwritten before the name moves.
		if err = overwrite(path); err == nil {
			err = os.Rename(tmp.Name(), path)
		}
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
