package vault

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"stellaops.io/stella/internal/safefile"
)

// testLogN is the scrypt work factor tests seal with: trivially cheap.
const testLogN = 2

// testPass is Passphrase with the cheap work factor.
func testPass(p string) Unlocker {
	return &passphrase{p: []byte(p), logN: testLogN}
}

// newIdentityFile returns an age identity file as age-keygen writes it.
func newIdentityFile(t testing.TB) []byte {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return []byte("# created: 2024-01-01T00:00:00Z\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n")
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// newVault initialises a vault in a fresh directory and opens it.
func newVault(t testing.TB, u Unlocker) (string, *Vault) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vault.age")
	ctx := context.Background()
	if err := Init(ctx, path, u); err != nil {
		t.Fatalf("Init: %v", err)
	}
	v, err := Open(ctx, path, u, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return path, v
}

func mustPut(t testing.TB, v *Vault, name, value string) {
	t.Helper()
	if err := v.Put(context.Background(), name, []byte(value), "", nil, t0); err != nil {
		t.Fatalf("Put %s: %v", name, err)
	}
}

func readBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decryptFile returns the plaintext of the vault file via age directly.
func decryptFile(t testing.TB, path string, u Unlocker) []byte {
	t.Helper()
	ids, err := u.identities()
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.Decrypt(bytes.NewReader(readBytes(t, path)), ids...)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sealJSON writes an age file of arbitrary plaintext sealed with u.
func sealJSON(t testing.TB, path string, plain []byte, u Unlocker) {
	t.Helper()
	recips, err := u.recipients()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := seal(plain, recips)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, ct, 0o600); err != nil {
		t.Fatal(err)
	}
}

// headerLen returns the length of the age header plus the 16-byte nonce,
// i.e. where the STREAM chunks start.
func headerLen(t testing.TB, data []byte) int {
	t.Helper()
	hdr, err := age.ExtractHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return len(hdr) + 16
}

// assertOnlyVaultFiles fails if dir holds anything but the vault, its lock
// and, when allowTemp, safefile temp leftovers.
func assertOnlyVaultFiles(t testing.TB, dir, vaultName string, allowTemp bool) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch n := e.Name(); {
		case n == vaultName, n == vaultName+".lock":
		case allowTemp && strings.HasPrefix(n, safefile.TempPrefix+vaultName+"-"):
		default:
			t.Errorf("unexpected file %s in vault dir", n)
		}
	}
}

type keyPair struct {
	alg, keyID   string
	priv, public []byte
}

func newKeyPair(t testing.TB, alg string) keyPair {
	t.Helper()
	var priv any
	switch alg {
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	default:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{
		alg:    alg,
		keyID:  "sha256:" + strings.Repeat("ab", 32),
		priv:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		public: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
	}
}
