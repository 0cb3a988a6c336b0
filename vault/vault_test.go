package vault

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
)

func unlockers(t *testing.T) map[string]func() Unlocker {
	idA, idB := newIdentityFile(t), newIdentityFile(t)
	return map[string]func() Unlocker{
		"passphrase":       func() Unlocker { return testPass("correct horse") },
		"identity":         func() Unlocker { return IdentityFile(idA) },
		"other-passphrase": func() Unlocker { return testPass("battery staple") },
		"other-identity":   func() Unlocker { return IdentityFile(idB) },
	}
}

func TestRoundTrip(t *testing.T) {
	us := unlockers(t)
	for _, tc := range []struct{ first, next string }{
		{"passphrase", "other-passphrase"},
		{"passphrase", "identity"},
		{"identity", "other-identity"},
		{"identity", "passphrase"},
	} {
		t.Run(tc.first+"-to-"+tc.next, func(t *testing.T) {
			ctx := context.Background()
			path, v := newVault(t, us[tc.first]())
			if got := v.List(); len(got) != 0 {
				t.Fatalf("new vault lists %v", got)
			}
			meta := map[string]string{"owner": "ops", "rotated-by": "jane doe"}
			if err := v.Put(ctx, "db/password", []byte("hunter2-hunter2"), "pack:deploy", meta, t0); err != nil {
				t.Fatal(err)
			}
			mustPut(t, v, "api.token", "short")
			t1 := t0.Add(time.Hour)
			if err := v.Put(ctx, "api.token", []byte("replaced-token-value"), "", nil, t1); err != nil {
				t.Fatal(err)
			}

			// A fresh handle sees what was written.
			w, err := Open(ctx, path, us[tc.first](), Options{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := w.Get("db/password")
			if err != nil {
				t.Fatal(err)
			}
			if string(s.Value.Reveal()) != "hunter2-hunter2" || s.Scope != "pack:deploy" ||
				!s.Created.Equal(t0) || !s.Updated.Equal(t0) || !cmp.Equal(s.Meta, meta) {
				t.Fatalf("db/password = %+v meta %v", s, s.Meta)
			}
			s, err = w.Get("api.token")
			if err != nil {
				t.Fatal(err)
			}
			if string(s.Value.Reveal()) != "replaced-token-value" || !s.Created.Equal(t0) || !s.Updated.Equal(t1) {
				t.Fatalf("api.token created %v updated %v", s.Created, s.Updated)
			}
			want := []SecretInfo{
				{Name: "api.token", Hint: "alue", Created: t0, Updated: t1},
				{Name: "db/password", Scope: "pack:deploy", Hint: "ter2", Created: t0, Updated: t0},
			}
			if d := cmp.Diff(want, w.List()); d != "" {
				t.Fatalf("List (-want +got):\n%s", d)
			}

			if err := w.Remove(ctx, "api.token"); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Get("api.token"); !errors.Is(err, ErrSecretNotFound) {
				t.Fatalf("Get removed: %v", err)
			}
			if err := w.Remove(ctx, "api.token"); !errors.Is(err, ErrSecretNotFound) {
				t.Fatalf("Remove twice: %v", err)
			}

			// Passwd: new unlocker opens, old does not, content unchanged.
			if err := w.Passwd(ctx, us[tc.next]()); err != nil {
				t.Fatal(err)
			}
			mustPut(t, w, "after-passwd", "written with the new unlocker")
			if _, err := Open(ctx, path, us[tc.first](), Options{}); !errors.Is(err, ErrBadPassphrase) {
				t.Fatalf("old unlocker after Passwd: %v", err)
			}
			x, err := Open(ctx, path, us[tc.next](), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, i := range x.List() {
				names = append(names, i.Name)
			}
			if d := cmp.Diff([]string{"after-passwd", "db/password"}, names); d != "" {
				t.Fatalf("after Passwd (-want +got):\n%s", d)
			}
			s, _ = x.Get("db/password")
			if string(s.Value.Reveal()) != "hunter2-hunter2" {
				t.Fatal("value changed by Passwd")
			}
			// The first handle (v) still holds the old unlocker: its writes
			// must fail cleanly and change nothing.
			before := readBytes(t, path)
			if err := v.Put(ctx, "stale", []byte("value-value"), "", nil, t0); !errors.Is(err, ErrBadPassphrase) {
				t.Fatalf("stale handle Put: %v", err)
			}
			if !bytes.Equal(before, readBytes(t, path)) {
				t.Fatal("failed write changed the file")
			}
		})
	}
}

func TestHandlesSeeEachOthersWrites(t *testing.T) {
	ctx := context.Background()
	path, a := newVault(t, testPass("pw"))
	b, err := Open(ctx, path, testPass("pw"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "from-b", "value-from-b")
	mustPut(t, a, "from-a", "value-from-a") // a re-reads under the lock
	if _, err := a.Get("from-b"); err != nil {
		t.Fatalf("a's snapshot after its write lacks b's secret: %v", err)
	}
	if _, err := b.Get("from-a"); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("b's snapshot is from before a's write, got %v", err)
	}
	c, err := Open(ctx, path, testPass("pw"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.List()); n != 2 {
		t.Fatalf("vault holds %d secrets, want 2", n)
	}
}

func TestInitRefusesExisting(t *testing.T) {
	ctx := context.Background()
	path, _ := newVault(t, testPass("pw"))
	before := readBytes(t, path)
	if err := Init(ctx, path, testPass("other")); !errors.Is(err, ErrExists) {
		t.Fatalf("Init over a vault: %v", err)
	}
	if !bytes.Equal(before, readBytes(t, path)) {
		t.Fatal("Init changed an existing vault")
	}
	other := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(other, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Init(ctx, other, testPass("pw")); !errors.Is(err, ErrExists) {
		t.Fatalf("Init over a file: %v", err)
	}
	if string(readBytes(t, other)) != "keep me" {
		t.Fatal("Init changed an existing file")
	}
}

func TestInitCreatesDirAndMode0600(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "vault")
	if err := Init(ctx, path, testPass("pw")); err != nil {
		t.Fatal(err)
	}
	v, err := Open(ctx, path, testPass("pw"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		for _, p := range []string{path, lockPath(path)} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("after %s: %s has mode %v, want 0600", step, filepath.Base(p), st.Mode().Perm())
			}
		}
	}
	check("init")
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("created dir mode %v, want 0700", st.Mode().Perm())
	}
	mustPut(t, v, "a", "value-of-a")
	check("put")
	if err := v.PutKey(ctx, "k", newKeyPair(t, "ed25519").priv, "ed25519", "id", nil, t0); err != nil {
		t.Fatal(err)
	}
	check("putkey")
	if err := v.Passwd(ctx, testPass("new")); err != nil {
		t.Fatal(err)
	}
	check("passwd")
	assertOnlyVaultFiles(t, dir, "vault", false)
}

func TestInvalidInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	path, v := newVault(t, testPass("pw"))
	mustPut(t, v, "keep", "original-value")
	kp := newKeyPair(t, "ecdsa-p256")
	if err := v.PutKey(ctx, "signer", kp.priv, kp.alg, kp.keyID, kp.public, t0); err != nil {
		t.Fatal(err)
	}
	other := newKeyPair(t, "ed25519")
	before := readBytes(t, path)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	long := bytes.Repeat([]byte("x"), maxValueLen+1)
	for _, tc := range []struct {
		name string
		err  error
		do   func() error
	}{
		{"empty name", ErrInvalidName, func() error { return v.Put(ctx, "", []byte("v"), "", nil, t0) }},
		{"leading dot", ErrInvalidName, func() error { return v.Put(ctx, ".hidden", []byte("v"), "", nil, t0) }},
		{"space", ErrInvalidName, func() error { return v.Put(ctx, "a b", []byte("v"), "", nil, t0) }},
		{"too long", ErrInvalidName, func() error { return v.Put(ctx, string(bytes.Repeat([]byte("a"), 129)), []byte("v"), "", nil, t0) }},
		{"empty value", ErrInvalidEntry, func() error { return v.Put(ctx, "keep", nil, "", nil, t0) }},
		{"value too long", ErrInvalidEntry, func() error { return v.Put(ctx, "keep", long, "", nil, t0) }},
		{"control in scope", ErrInvalidEntry, func() error { return v.Put(ctx, "keep", []byte("v"), "a\nb", nil, t0) }},
		{"bad meta key", ErrInvalidName, func() error { return v.Put(ctx, "keep", []byte("v"), "", map[string]string{"a b": "c"}, t0) }},
		{"bad meta value", ErrInvalidEntry, func() error { return v.Put(ctx, "keep", []byte("v"), "", map[string]string{"k": "\x00"}, t0) }},
		{"time out of range", ErrInvalidEntry, func() error {
			return v.Put(ctx, "keep", []byte("v"), "", nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
		}},
		{"canceled", context.Canceled, func() error { return v.Put(canceled, "new", []byte("v"), "", nil, t0) }},
		{"remove missing", ErrSecretNotFound, func() error { return v.Remove(ctx, "missing") }},
		{"key taken", ErrExists, func() error { return v.PutKey(ctx, "signer", other.priv, other.alg, "id2", other.public, t0) }},
		{"key not pem", ErrInvalidEntry, func() error { return v.PutKey(ctx, "k2", []byte("junk"), "ed25519", "id", nil, t0) }},
		{"key public mismatch", ErrInvalidEntry, func() error { return v.PutKey(ctx, "k2", kp.priv, kp.alg, "id", other.public, t0) }},
		{"key no alg", ErrInvalidEntry, func() error { return v.PutKey(ctx, "k2", kp.priv, "", "id", nil, t0) }},
		{"key no id", ErrInvalidEntry, func() error { return v.PutKey(ctx, "k2", kp.priv, kp.alg, "", nil, t0) }},
		{"key remove missing", ErrKeyNotFound, func() error { return v.RemoveKey(ctx, "missing") }},
		{"passwd empty", ErrInvalidUnlocker, func() error { return v.Passwd(ctx, testPass("")) }},
		{"passwd bad identity", ErrInvalidUnlocker, func() error { return v.Passwd(ctx, IdentityFile([]byte("AGE-SECRET-KEY-1XYZ"))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if !bytes.Equal(before, readBytes(t, path)) {
				t.Fatal("file changed")
			}
			s, err := v.Get("keep")
			if err != nil || string(s.Value.Reveal()) != "original-value" {
				t.Fatalf("snapshot changed: %v", err)
			}
			if n := len(v.List()); n != 1 {
				t.Fatalf("snapshot holds %d secrets", n)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	path, v := newVault(t, testPass("pw"))
	ed, ec := newKeyPair(t, "ed25519"), newKeyPair(t, "ecdsa-p256")
	if err := v.PutKey(ctx, "release", ed.priv, ed.alg, ed.keyID, ed.public, t0); err != nil {
		t.Fatal(err)
	}
	if err := v.PutKey(ctx, "approver", ec.priv, ec.alg, "sha256:ec", nil, t0); err != nil {
		t.Fatal(err)
	}
	w, err := Open(ctx, path, testPass("pw"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := w.Key("release")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.PrivatePEM.Reveal(), ed.priv) || !bytes.Equal(k.PublicPEM, ed.public) ||
		k.Algorithm != "ed25519" || k.KeyID != ed.keyID || !k.Created.Equal(t0) {
		t.Fatalf("Key = %+v", k)
	}
	want := []KeyInfo{
		{Name: "approver", Algorithm: "ecdsa-p256", KeyID: "sha256:ec", Created: t0},
		{Name: "release", Algorithm: "ed25519", KeyID: ed.keyID, PublicPEM: ed.public, Created: t0},
	}
	if d := cmp.Diff(want, w.Keys()); d != "" {
		t.Fatalf("Keys (-want +got):\n%s", d)
	}
	if _, err := w.Key("nope"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Key missing: %v", err)
	}
	if err := w.RemoveKey(ctx, "release"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Key("release"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Key removed: %v", err)
	}
	// Keys and secrets live in separate namespaces.
	mustPut(t, w, "approver", "a-secret-named-like-a-key")
	if _, err := w.Key("approver"); err != nil {
		t.Fatal(err)
	}
}

func TestListHint(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"abcdefghijk", "****"},          // 11 characters
		{"abcdefghijkl", "ijkl"},         // 12
		{"ééééééééééé€", "ééé€"},         // 12 runes, multi-byte
		{"abcdefghijk\x00", "****"},      // non-printable tail
		{"\xff\xfeabcdefghijkl", "****"}, // not UTF-8
		{"abcdefghijkl\n", "****"},
	} {
		if got := hint([]byte(tc.value)); got != tc.want {
			t.Errorf("hint(%q) = %q, want %q", tc.value, got, tc.want)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "none"), testPass("pw"), Options{})
	if !errors.Is(err, ErrVaultNotFound) {
		t.Fatalf("got %v", err)
	}
}

func TestWrongUnlocker(t *testing.T) {
	ctx := context.Background()
	us := unlockers(t)
	for _, tc := range []struct{ seal, open string }{
		{"passphrase", "other-passphrase"},
		{"passphrase", "identity"},
		{"identity", "other-identity"},
		{"identity", "passphrase"},
	} {
		t.Run(tc.seal+"-opened-with-"+tc.open, func(t *testing.T) {
			path, _ := newVault(t, us[tc.seal]())
			_, err := Open(ctx, path, us[tc.open](), Options{})
			if !errors.Is(err, ErrBadPassphrase) {
				t.Fatalf("got %v, want ErrBadPassphrase", err)
			}
			var noMatch *age.NoIdentityMatchError
			if !errors.As(err, &noMatch) {
				t.Fatalf("error %v is not an *age.NoIdentityMatchError", err)
			}
		})
	}
	if _, err := Open(ctx, "x", Passphrase(nil), Options{}); !errors.Is(err, ErrInvalidUnlocker) {
		t.Fatalf("empty passphrase: %v", err)
	}
	if err := Init(ctx, filepath.Join(t.TempDir(), "v"), IdentityFile([]byte("# nothing\n"))); !errors.Is(err, ErrInvalidUnlocker) {
		t.Fatalf("identity file without identities: %v", err)
	}
}

func TestForeignFiles(t *testing.T) {
	ctx := context.Background()
	u := testPass("pw")
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(i*131 + i/7)
	}
	for _, tc := range []struct {
		name    string
		content func(path string)
	}{
		{"random bytes", func(p string) { _ = os.WriteFile(p, random, 0o600) }},
		{"plain text", func(p string) { _ = os.WriteFile(p, []byte("DB_PASSWORD=hunter2\nAPI=abc\n"), 0o600) }},
		{"empty", func(p string) { _ = os.WriteFile(p, nil, 0o600) }},
		{"armored age", func(p string) {
			_ = os.WriteFile(p, []byte("-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"), 0o600)
		}},
		{"age of other json", func(p string) { sealJSON(t, p, []byte(`{"hello":"world"}`), u) }},
		{"age of json array", func(p string) { sealJSON(t, p, []byte(`[1,2,3]`), u) }},
		{"age of text", func(p string) { sealJSON(t, p, []byte("just some text"), u) }},
		{"age of future format", func(p string) { sealJSON(t, p, []byte(`{"format":"stella-vault/v2","keys":{},"secrets":{}}`), u) }},
		{"age of unknown field", func(p string) {
			sealJSON(t, p, []byte(`{"extra":1,"format":"stella-vault/v1","keys":{},"secrets":{}}`), u)
		}},
		{"age of non-canonical", func(p string) { sealJSON(t, p, []byte(`{"format":"stella-vault/v1", "keys":{},"secrets":{}}`), u) }},
		{"age of bad name", func(p string) {
			sealJSON(t, p, []byte(`{"format":"stella-vault/v1","keys":{},"secrets":{"-x":{"created":"2024-01-01T00:00:00Z","scope":"","updated":"2024-01-01T00:00:00Z","value":"eA=="}}}`), u)
		}},
		{"directory", func(p string) { _ = os.Mkdir(p, 0o700) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "vault")
			tc.content(path)
			_, err := Open(ctx, path, u, Options{})
			if !errors.Is(err, ErrNotAVault) {
				t.Fatalf("got %v, want ErrNotAVault", err)
			}
		})
	}
	// A canonical payload written by hand is accepted: the check above is
	// about form, not about who wrote it.
	path := filepath.Join(t.TempDir(), "vault")
	sealJSON(t, path, []byte(`{"format":"stella-vault/v1","keys":{},"secrets":{"x":{"created":"2024-01-01T00:00:00Z","scope":"","updated":"2024-01-01T00:00:00Z","value":"eA=="}}}`), u)
	v, err := Open(ctx, path, u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := v.Get("x"); err != nil || string(s.Value.Reveal()) != "x" {
		t.Fatalf("Get x: %v", err)
	}
}

func TestTamperedAndTruncated(t *testing.T) {
	ctx := context.Background()
	for name, mk := range map[string]func() Unlocker{
		"passphrase": func() Unlocker { return testPass("pw") },
		"identity":   func() Unlocker { return IdentityFile(newIdentityFile(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			u := mk()
			path, v := newVault(t, u)
			for i := range 20 {
				mustPut(t, v, "secret-"+string(rune('a'+i)), "some-secret-value-of-reasonable-length")
			}
			good := readBytes(t, path)
			payloadStart := headerLen(t, good)
			stale, err := Open(ctx, path, u, Options{})
			if err != nil {
				t.Fatal(err)
			}
			flip := func(i int) []byte {
				b := bytes.Clone(good)
				b[i] ^= 0x01
				return b
			}
			cases := []struct {
				name string
				data []byte
				want error
			}{
				{"flip middle", flip(len(good) / 2), ErrCorrupt},
				{"flip first payload byte", flip(payloadStart), ErrCorrupt},
				{"flip last byte", flip(len(good) - 1), ErrCorrupt},
				{"flip nonce", flip(payloadStart - 1), ErrCorrupt},
				{"flip header mac", flip(payloadStart - 20), ErrCorrupt},
				{"truncate half", good[:len(good)/2], ErrCorrupt},
				{"truncate one byte", good[:len(good)-1], ErrCorrupt},
				{"truncate to header", good[:payloadStart], ErrCorrupt},
				{"truncate inside header", good[:payloadStart/2], ErrCorrupt},
				{"truncate inside intro", good[:10], ErrCorrupt},
				{"trailing data", append(bytes.Clone(good), 0), ErrCorrupt},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					if err := os.WriteFile(path, tc.data, 0o600); err != nil {
						t.Fatal(err)
					}
					if _, err := Open(ctx, path, u, Options{}); !errors.Is(err, tc.want) {
						t.Fatalf("Open: got %v, want %v", err, tc.want)
					}
					if err := stale.Put(ctx, "new", []byte("value-value"), "", nil, t0); !errors.Is(err, tc.want) {
						t.Fatalf("Put on damaged file: got %v, want %v", err, tc.want)
					}
					if !bytes.Equal(readBytes(t, path), tc.data) {
						t.Fatal("damaged file was changed")
					}
				})
			}
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx, path, u, Options{}); err != nil {
				t.Fatalf("restored file: %v", err)
			}
		})
	}
}

// TestEveryByteFlipIsDetected flips each byte of a small vault in turn: no
// flip may open, flips in the STREAM payload must say ErrCorrupt, and no
// flip may give anything but the three open-failure sentinels.
func TestEveryByteFlipIsDetected(t *testing.T) {
	ctx := context.Background()
	u := testPass("pw")
	path, v := newVault(t, u)
	mustPut(t, v, "a", "alpha-value-0123456789")
	good := readBytes(t, path)
	payloadStart := headerLen(t, good)
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x80
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, path, u, Options{})
		switch {
		case err == nil:
			t.Fatalf("flip at %d opened", i)
		case i >= payloadStart-16 && !errors.Is(err, ErrCorrupt):
			t.Fatalf("flip at %d (payload): %v", i, err)
		case !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrBadPassphrase) && !errors.Is(err, ErrNotAVault):
			t.Fatalf("flip at %d: unclassified error %v", i, err)
		}
	}
}

func TestLockTimeoutNamesHolder(t *testing.T) {
	ctx := context.Background()
	path, _ := newVault(t, testPass("pw"))
	v, err := Open(ctx, path, testPass("pw"), Options{LockTimeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	release, err := acquire(ctx, path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before := readBytes(t, path)
	start := time.Now()
	err = v.Put(ctx, "x", []byte("value-value"), "", nil, t0)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("got %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("waited %v", waited)
	}
	if got := holder(lockPath(path)); got != os.Getpid() {
		t.Fatalf("lock file names pid %d, want %d", got, os.Getpid())
	}
	if !bytes.Contains([]byte(err.Error()), []byte("pid ")) {
		t.Fatalf("error does not name the holder: %v", err)
	}
	// A canceled context stops the wait with the context's error.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := v.Put(cctx, "x", []byte("value-value"), "", nil, t0); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrLocked) {
		t.Fatalf("canceled wait: %v", err)
	}
	release()
	if !bytes.Equal(before, readBytes(t, path)) {
		t.Fatal("file changed while locked")
	}
	if holder(lockPath(path)) != 0 {
		t.Fatal("released lock still names a holder")
	}
	if err := v.Put(ctx, "x", []byte("value-value"), "", nil, t0); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	u := testPass("pw")
	_, v := newVault(t, u)
	mustPut(t, v, "a", "alpha-value")
	s, _ := v.Get("a")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if string(s.Value.Reveal()) != "alpha-value" {
		t.Fatal("Close wiped a copy the caller owns")
	}
	if _, err := v.Get("a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := v.Put(ctx, "b", []byte("v"), "", nil, t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
	if v.List() != nil || v.Keys() != nil {
		t.Fatal("List/Keys after Close")
	}
	// The caller's unlocker is not wiped by Close.
	if _, err := Open(ctx, v.Path(), u, Options{}); err != nil {
		t.Fatalf("reopen with the same unlocker: %v", err)
	}
}

func TestResolve(t *testing.T) {
	_, v := newVault(t, testPass("pw"))
	mustPut(t, v, "db/password", "hunter2-hunter2")
	val, err := v.Resolve("vault:db/password")
	if err != nil || string(val.Reveal()) != "hunter2-hunter2" {
		t.Fatalf("Resolve: %v", err)
	}
	if _, err := v.Resolve("vault:missing"); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("missing: %v", err)
	}
	for _, bad := range []string{"env:X", "vault:", "vault:a#field", "db/password"} {
		if _, err := v.Resolve(bad); !errors.Is(err, ErrInvalidRef) {
			t.Fatalf("Resolve(%q): %v", bad, err)
		}
	}
}

func TestStaleTempsRemovedOnWrite(t *testing.T) {
	path, v := newVault(t, testPass("pw"))
	dir := filepath.Dir(path)
	stale := filepath.Join(dir, ".stella-tmp-vault.age-12345")
	// As safefile names it now: the writer's pid, then random digits.
	stalePID := filepath.Join(dir, ".stella-tmp-vault.age-4321-12345")
	unrelated := filepath.Join(dir, ".stella-tmp-vault.age-backup-12345")
	for _, p := range []string{stale, stalePID, unrelated} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(context.Background(), path, testPass("pw"), Options{}); err != nil {
		t.Fatalf("Open with a temp leftover: %v", err)
	}
	mustPut(t, v, "a", "alpha-value")
	for _, p := range []string{stale, stalePID} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("stale temp %s survived a write: %v", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Fatalf("another file's temp was removed: %v", err)
	}
}
