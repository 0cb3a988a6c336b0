package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
)

var passphrase = []byte("correct horse battery staple")

func TestPrivateRoundTrip(t *testing.T) {
	for _, alg := range []Algorithm{AlgECDSAP256, AlgEd25519} {
		t.Run(string(alg), func(t *testing.T) {
			p, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := MarshalPrivate(p, passphrase)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(enc, []byte(armor.Header+"\n")) {
				t.Fatalf("key file does not start with the age armor header:\n%s", enc)
			}
			if bytes.Contains(enc, []byte("PRIVATE KEY")) {
				t.Fatal("key file contains the plaintext PEM")
			}
			got, err := ParsePrivate(enc, passphrase)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID() != p.ID() || got.Algorithm() != alg {
				t.Fatalf("parsed key %s (%s), want %s (%s)", got.ID(), got.Algorithm(), p.ID(), alg)
			}
			// The file opens with plain age too (interop with `age -d`).
			id, err := age.NewScryptIdentity(string(passphrase))
			if err != nil {
				t.Fatal(err)
			}
			r, err := age.Decrypt(armor.NewReader(bytes.NewReader(enc)), id)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			want, err := MarshalPrivatePEM(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(plain, want) {
				t.Fatalf("age -d gives\n%s\nwant\n%s", plain, want)
			}
			fromPEM, err := ParsePrivatePEM(plain)
			if err != nil {
				t.Fatal(err)
			}
			if fromPEM.ID() != p.ID() {
				t.Fatalf("ParsePrivatePEM id %s, want %s", fromPEM.ID(), p.ID())
			}
		})
	}
}

// rearmor decodes an armored age file, lets mutate change the binary, and
// armors it again.
func rearmor(t *testing.T, enc []byte, mutate func([]byte) []byte) []byte {
	t.Helper()
	bin, err := io.ReadAll(armor.NewReader(bytes.NewReader(enc)))
	if err != nil {
		t.Fatal(err)
	}
	bin = mutate(bin)
	var out bytes.Buffer
	w := armor.NewWriter(&out)
	if _, err := w.Write(bin); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestParsePrivateRefuses(t *testing.T) {
	p, err := Generate(AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := MarshalPrivate(p, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	plainPEM, err := MarshalPrivatePEM(p)
	if err != nil {
		t.Fatal(err)
	}

	// An age file encrypted to a public key, not a passphrase.
	x, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	var toKey bytes.Buffer
	aw := armor.NewWriter(&toKey)
	w, err := age.Encrypt(aw, x.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plainPEM)
	w.Close()
	aw.Close()

	// A passphrase file whose plaintext is not a key.
	var notKey bytes.Buffer
	sr, _ := age.NewScryptRecipient(string(passphrase))
	sr.SetWorkFactor(10)
	aw = armor.NewWriter(&notKey)
	w, err = age.Encrypt(aw, sr)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	w.Close()
	aw.Close()

	flipLast := func(b []byte) []byte { b[len(b)-3] ^= 0x01; return b }
	flipMAC := func(b []byte) []byte {
		i := bytes.Index(b, []byte("\n--- ")) + len("\n--- ")
		// Change one base64 character of the header MAC.
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return b
	}
	truncate := func(b []byte) []byte { return b[:len(b)-10] }

	tests := []struct {
		name       string
		data       []byte
		passphrase []byte
		want       error
		wrapsAge   bool
	}{
		{"wrong passphrase", enc, []byte("wrong"), ErrBadPassphrase, false},
		{"empty passphrase", enc, nil, ErrEmptyPassphrase, false},
		{"plain pem", plainPEM, passphrase, ErrNotAKey, false},
		{"garbage", []byte("hello world"), passphrase, ErrNotAKey, false},
		{"encrypted to a public key", toKey.Bytes(), passphrase, ErrNotAKey, false},
		{"plaintext not a key", notKey.Bytes(), passphrase, ErrNotAKey, false},
		{"payload tampered", rearmor(t, enc, flipLast), passphrase, ErrKeyFileCorrupt, true},
		{"header mac tampered", rearmor(t, enc, flipMAC), passphrase, ErrKeyFileCorrupt, true},
		{"truncated", rearmor(t, enc, truncate), passphrase, ErrKeyFileCorrupt, true},
		{"armor damaged", bytes.Replace(enc, []byte("\n"), []byte("\n!"), 2), passphrase, ErrKeyFileCorrupt, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivate(tt.data, tt.passphrase)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParsePrivate: %v (key %v), want %v", err, got, tt.want)
			}
			if tt.wrapsAge {
				// The age failure itself is wrapped as well.
				var inner error
				if u, ok := err.(interface{ Unwrap() []error }); ok && len(u.Unwrap()) == 2 {
					inner = u.Unwrap()[1]
				}
				if inner == nil {
					t.Fatalf("error %v does not wrap the age failure", err)
				}
			}
		})
	}
}

func TestParsePrivatePEMRefuses(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(p256)
	good, err := Generate(AlgECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	goodPEM, _ := MarshalPrivatePEM(good)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotAKey},
		{"public key", good.PublicPEM(), ErrNotAKey},
		{"sec1", pemOf(t, "EC PRIVATE KEY", sec1), ErrNotAKey},
		{"trailing data", append(goodPEM, "x"...), ErrNotAKey},
		{"bad der", pemOf(t, "PRIVATE KEY", []byte{1}), ErrNotAKey},
		{"p-384", pemOf(t, "PRIVATE KEY", p384DER), ErrUnsupportedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParsePrivatePEM(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("ParsePrivatePEM: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	p, err := Generate(AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, "alice", p, passphrase); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"alice.key": 0o600, "alice.pub": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %o, want %o", name, fi.Mode().Perm(), mode)
		}
	}
	keyFile, _ := os.ReadFile(filepath.Join(dir, "alice.key"))
	got, err := ParsePrivate(keyFile, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	pubFile, _ := os.ReadFile(filepath.Join(dir, "alice.pub"))
	if _, id, err := ParsePublic(pubFile); err != nil || id != p.ID() || got.ID() != p.ID() {
		t.Fatalf("written files hold %s / %s (%v), want %s", got.ID(), id, err, p.ID())
	}

	other, _ := Generate(AlgEd25519)
	if err := WriteFiles(dir, "alice", other, passphrase); !errors.Is(err, ErrExists) {
		t.Fatalf("second WriteFiles: %v, want ErrExists", err)
	}
	// Only the .pub existing is enough to refuse, and nothing is written.
	os.WriteFile(filepath.Join(dir, "bob.pub"), []byte("x"), 0o644)
	if err := WriteFiles(dir, "bob", other, passphrase); !errors.Is(err, ErrExists) {
		t.Fatalf("WriteFiles over bob.pub: %v, want ErrExists", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bob.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bob.key written despite refusal: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "alice.key"))
	if !bytes.Equal(after, keyFile) {
		t.Fatal("alice.key changed")
	}
	for _, bad := range []string{"", "..", "a/b", `a\b`} {
		if err := WriteFiles(dir, bad, p, passphrase); !errors.Is(err, ErrInvalidName) {
			t.Errorf("WriteFiles(%q): %v, want ErrInvalidName", bad, err)
		}
	}
	if err := WriteFiles(dir, "carol", p, nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("WriteFiles without passphrase: %v, want ErrEmptyPassphrase", err)
	}
}
