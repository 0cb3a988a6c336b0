package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leakSecret is a value that must never be seen outside the vault. It has
// characters no name allows, so passing it as a name is an error too.
const leakSecret = "S3cr3t Never!Leak=9f8e7d6c"

// needles returns the forms in which a secret could leak.
func needles(secret []byte) [][]byte {
	return [][]byte{
		secret,
		[]byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawStdEncoding.EncodeToString(secret)),
		[]byte(base64.URLEncoding.EncodeToString(secret)),
		[]byte(hex.EncodeToString(secret)),
	}
}

func containsAny(hay []byte, ns [][]byte) bool {
	for _, n := range ns {
		if bytes.Contains(hay, n) {
			return true
		}
	}
	return false
}

// TestSecretNeverLeaks drives every operation (successes and failures),
// renders every type, then scans every file under the vault directory and
// every message for the secret value, the passphrases and a private key.
func TestSecretNeverLeaks(t *testing.T) {
	ctx := context.Background()
	const pass1, pass2 = "first-Passphrase-77", "second-Passphrase-88"
	dir := t.TempDir()
	path := filepath.Join(dir, "vault")
	kp := newKeyPair(t, "ed25519")
	// The PEM body line is the base64 of the PKCS#8 DER.
	keyBody := []byte(strings.Split(string(kp.priv), "\n")[1])

	var msgs []string
	note := func(err error) {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if err := Init(ctx, path, testPass(pass1)); err != nil {
		t.Fatal(err)
	}
	v, err := Open(ctx, path, testPass(pass1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Put(ctx, "db", []byte(leakSecret), "pack:x", map[string]string{"owner": "ops"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := v.PutKey(ctx, "signer", kp.priv, kp.alg, kp.keyID, kp.public, t0); err != nil {
		t.Fatal(err)
	}
	s, err := v.Get("db")
	if err != nil || string(s.Value.Reveal()) != leakSecret {
		t.Fatalf("Get: %v", err)
	}
	k, err := v.Key("signer")
	if err != nil {
		t.Fatal(err)
	}
	// Failures whose input carries the secret.
	note(v.Put(ctx, leakSecret, []byte(leakSecret), "", nil, t0))
	note(v.Put(ctx, "db", []byte(leakSecret), leakSecret+"\n", nil, t0))
	note(v.Put(ctx, "db", []byte(leakSecret), "", map[string]string{"k": leakSecret + "\x00"}, t0))
	note(v.Put(ctx, "db", []byte(leakSecret), "", map[string]string{leakSecret: "v"}, t0))
	note(v.PutKey(ctx, leakSecret, kp.priv, kp.alg, kp.keyID, nil, t0))
	note(v.PutKey(ctx, "signer", kp.priv, kp.alg, kp.keyID, nil, t0))
	note(v.PutKey(ctx, "k2", kp.priv[:len(kp.priv)-30], kp.alg, kp.keyID, nil, t0))
	note(v.PutKey(ctx, "k2", kp.public, kp.alg, kp.keyID, kp.priv, t0))
	_, err = v.Get(leakSecret)
	note(err)
	_, err = v.Key(leakSecret)
	note(err)
	_, err = v.Resolve("vault:" + leakSecret)
	note(err)
	note(v.Remove(ctx, leakSecret))
	_, err = Open(ctx, path, testPass(leakSecret), Options{})
	note(err)
	_, err = Open(ctx, path, IdentityFile([]byte(leakSecret)), Options{})
	note(err)
	_, err = Open(ctx, path, IdentityFile(append([]byte("AGE-SECRET-KEY-1"), leakSecret...)), Options{})
	note(err)
	_, err = PathFromURL("https://user:" + leakSecret + "@host/x")
	note(err)
	_, err = PathFromURL("file://user:" + strings.ReplaceAll(leakSecret, " ", "") + "@localhost/x")
	note(err)
	if err := v.Passwd(ctx, testPass(pass2)); err != nil {
		t.Fatal(err)
	}
	mustPut(t, v, "other", "another-value-xyz")
	// A foreign age file of secret JSON in the same directory must not
	// make Open quote it.
	foreign := filepath.Join(dir, "foreign")
	sealJSON(t, foreign, []byte(`{"format":"`+leakSecret+`"}`), testPass(pass2))
	_, err = Open(ctx, foreign, testPass(pass2), Options{})
	note(err)
	sealJSON(t, foreign, []byte(`{"format":"stella-vault/v1","keys":{},"secrets":{"a":{"value":"`+leakSecret+`"}}}`), testPass(pass2))
	_, err = Open(ctx, foreign, testPass(pass2), Options{})
	note(err)
	if len(msgs) < 15 {
		t.Fatalf("only %d failures were provoked", len(msgs))
	}

	// Renderings.
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("t", "secret", s, "value", s.Value, "key", k)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("t", "secret", s, "value", s.Value, "key", k)
	js, err := json.Marshal(map[string]any{"s": s, "k": k, "list": v.List()})
	if err != nil {
		t.Fatal(err)
	}
	u := testPass(pass1)
	msgs = append(msgs,
		fmt.Sprintf("%v %+v %#v %s %q %x %X", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v %s %q %x", s.Value, s.Value, s.Value, s.Value, s.Value, s.Value),
		fmt.Sprintf("%v %+v %#v %s", k, k, k, k),
		fmt.Sprintf("%v %+v %#v %s", v, v, v, v),
		fmt.Sprintf("%v %+v %#v %s %x", u, u, u, u, u),
		fmt.Sprintf("%v %+v %#v", []Secret{s}, map[string]Secret{"a": s}, &s),
		fmt.Sprintf("%+v", v.List()),
		s.Value.String(), s.Value.GoString(),
		logs.String(), string(js),
	)
	for _, m := range msgs {
		for _, ns := range [][][]byte{needles([]byte(leakSecret)), needles(keyBody), needles([]byte(pass1)), needles([]byte(pass2))} {
			if containsAny([]byte(m), ns) {
				t.Errorf("secret material in message: %s", m)
			}
		}
	}
	if !strings.Contains(msgs[len(msgs)-1], redacted) {
		t.Fatalf("json output lacks the redaction marker: %s", msgs[len(msgs)-1])
	}

	// Files: nothing anywhere, including inside the (encrypted) vault.
	nFiles := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		nFiles++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, ns := range [][][]byte{needles([]byte(leakSecret)), needles(keyBody), needles([]byte(pass1)), needles([]byte(pass2))} {
			if containsAny(b, ns) {
				t.Errorf("secret material in file %s", filepath.Base(p))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if nFiles < 3 {
		t.Fatalf("scanned only %d files", nFiles)
	}
	// The check is not vacuous: the plaintext does hold the value.
	if plain := decryptFile(t, path, testPass(pass2)); !containsAny(plain, needles([]byte(leakSecret))) {
		t.Fatal("decrypted payload lacks the secret; the scan proves nothing")
	}
}

func TestValueRendersRedacted(t *testing.T) {
	val := cloneValue([]byte(leakSecret))
	s := Secret{Name: "n", Value: val, Created: time.Unix(0, 0).UTC()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		for _, arg := range []any{val, &val, s, &s, []Value{val}} {
			out := fmt.Sprintf(verb, arg)
			if containsAny([]byte(out), needles([]byte(leakSecret))) {
				t.Errorf("Sprintf(%q) = %s", verb, out)
			}
			if !strings.Contains(out, redacted) {
				t.Errorf("Sprintf(%q) = %s lacks %s", verb, out, redacted)
			}
		}
	}
	b, err := json.Marshal(s)
	if err != nil || !bytes.Contains(b, []byte(`"Value":"[redacted]"`)) {
		t.Fatalf("json %s %v", b, err)
	}
	if string(val.Reveal()) != leakSecret || val.Len() != len(leakSecret) {
		t.Fatal("Reveal lost the value")
	}
	val.Wipe()
	if !bytes.Equal(val.Reveal(), make([]byte, len(leakSecret))) {
		t.Fatal("Wipe left bytes")
	}
}
