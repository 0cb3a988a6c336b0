package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
)

func TestEncodeIsCanonical(t *testing.T) {
	p := newPayload()
	p.Secrets["b/two"] = &secretRecord{
		Created: t0, Updated: t0.Add(time.Second), Scope: `pack:"q" <&> é`,
		Meta:  map[string]string{"z": "last", "a": "first \\ back"},
		Value: []byte{0, 1, 2, 0xff},
	}
	p.Secrets["a.one"] = &secretRecord{Created: t0, Updated: t0, Value: []byte("x")}
	p.Keys["k"] = &keyRecord{Algorithm: "ed25519", Created: t0, KeyID: "sha256:ab", PrivatePEM: []byte("P"), PublicPEM: "line1\nline2\n"}
	got := string(p.encode())
	want := `{"format":"stella-vault/v1","keys":{"k":{"algorithm":"ed25519","created":"2024-05-06T07:08:09.123456789Z","key_id":"sha256:ab","private_pem":"UA==","public_pem":"line1\nline2\n"}},` +
		`"secrets":{"a.one":{"created":"2024-05-06T07:08:09.123456789Z","scope":"","updated":"2024-05-06T07:08:09.123456789Z","value":"eA=="},` +
		`"b/two":{"created":"2024-05-06T07:08:09.123456789Z","meta":{"a":"first \\ back","z":"last"},"scope":"pack:\"q\" <&> é","updated":"2024-05-06T07:08:10.123456789Z","value":"AAEC/w=="}}}`
	if got != want {
		t.Fatalf("encode:\n got %s\nwant %s", got, want)
	}
	canon, err := jcs.Transform([]byte(got))
	if err != nil || string(canon) != got {
		t.Fatalf("not RFC 8785 canonical:\n got %s\n jcs %s (%v)", got, canon, err)
	}
	// With a real key, the payload decodes and re-encodes unchanged.
	kp := newKeyPair(t, "ed25519")
	p.Keys["k"].PrivatePEM, p.Keys["k"].PublicPEM = kp.priv, string(kp.public)
	enc := p.encode()
	back, err := decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if again := back.encode(); !bytes.Equal(again, enc) {
		t.Fatalf("decode/encode round trip changed the payload:\n%s", again)
	}
}

func TestAppendStringMatchesJCS(t *testing.T) {
	for _, s := range []string{"", "plain", "\"\\", "\b\f\n\r\t", "\x00\x01\x1f\x7f", "<&>", "é€😀", "\u2028\u2029"} {
		got := appendString(nil, s)
		canon, err := jcs.Transform(got)
		if err != nil || !bytes.Equal(canon, got) {
			t.Errorf("appendString(%q) = %s, jcs %s (%v)", s, got, canon, err)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Errorf("appendString(%q) decodes to %q (%v)", s, back, err)
		}
	}
}

// TestVaultFileIsPlainAge checks the on-disk format: a binary age file (no
// header of ours) whose plaintext is the canonical payload.
func TestVaultFileIsPlainAge(t *testing.T) {
	u := testPass("pw")
	path, v := newVault(t, u)
	if err := v.Put(context.Background(), "b", []byte("bee-value"), "s", map[string]string{"m": "1"}, t0); err != nil {
		t.Fatal(err)
	}
	mustPut(t, v, "a", "ay-value")
	data := readBytes(t, path)
	if !bytes.HasPrefix(data, []byte(ageIntro+"-> scrypt ")) {
		t.Fatalf("file starts with %q", data[:min(len(data), 40)])
	}
	plain := decryptFile(t, path, u)
	if !bytes.HasPrefix(plain, []byte(`{"format":"stella-vault/v1","keys":{},"secrets":{"a":{`)) {
		t.Fatalf("payload %s", plain)
	}
	canon, err := jcs.Transform(plain)
	if err != nil || !bytes.Equal(canon, plain) {
		t.Fatalf("payload not canonical: %s", plain)
	}
	// Identity vaults are X25519 age files.
	idPath, _ := newVault(t, IdentityFile(newIdentityFile(t)))
	if data := readBytes(t, idPath); !bytes.HasPrefix(data, []byte(ageIntro+"-> X25519 ")) {
		t.Fatalf("identity vault starts with %q", data[:40])
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := `{"format":"stella-vault/v1","keys":{},"secrets":{"a":{"created":"2024-01-01T00:00:00Z","scope":"","updated":"2024-01-01T00:00:00Z","value":"eA=="}}}`
	if _, err := decode([]byte(valid)); err != nil {
		t.Fatalf("valid payload: %v", err)
	}
	for name, in := range map[string]string{
		"not json":        `nope`,
		"no format":       `{"keys":{},"secrets":{}}`,
		"other format":    `{"format":"stella-vault/v9","keys":{},"secrets":{}}`,
		"missing keys":    `{"format":"stella-vault/v1","secrets":{}}`,
		"null secrets":    `{"format":"stella-vault/v1","keys":{},"secrets":null}`,
		"duplicate field": strings.Replace(valid, `"format":"stella-vault/v1",`, `"format":"stella-vault/v1","format":"stella-vault/v1",`, 1),
		"case variant":    strings.Replace(valid, `"scope"`, `"Scope"`, 1),
		"non-utc time":    strings.Replace(valid, `"created":"2024-01-01T00:00:00Z"`, `"created":"2024-01-01T01:00:00+01:00"`, 1),
		"empty value":     strings.Replace(valid, `"eA=="`, `""`, 1),
		"null record":     `{"format":"stella-vault/v1","keys":{},"secrets":{"a":null}}`,
		"bad key pem":     `{"format":"stella-vault/v1","keys":{"k":{"algorithm":"ed25519","created":"2024-01-01T00:00:00Z","key_id":"x","private_pem":"eA==","public_pem":""}},"secrets":{}}`,
		"whitespace":      valid + "\n",
		"invalid utf-8":   strings.Replace(valid, `"scope":""`, "\"scope\":\"\xff\"", 1),
	} {
		if _, err := decode([]byte(in)); !errors.Is(err, ErrNotAVault) {
			t.Errorf("%s: got %v, want ErrNotAVault", name, err)
		}
	}
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, name string
		ok       bool
	}{
		{"vault:db", "db", true},
		{"vault:team/db.password_1-x", "team/db.password_1-x", true},
		{"vault:", "", false},
		{"vault:db#field", "", false},
		{"vault:/abs", "", false},
		{"Vault:db", "", false},
		{"env:DB", "", false},
		{"db", "", false},
		{"vault:" + strings.Repeat("a", 129), "", false},
	} {
		name, ok := ParseRef(tc.in)
		if name != tc.name || ok != tc.ok {
			t.Errorf("ParseRef(%q) = %q, %v; want %q, %v", tc.in, name, ok, tc.name, tc.ok)
		}
	}
}

func TestPathFromURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file:///var/lib/stella/vault.age", "/var/lib/stella/vault.age"},
		{"file://localhost/srv/vault", "/srv/vault"},
		{"FILE:///srv/vault", "/srv/vault"},
		{"file:///srv/my%20vault", "/srv/my vault"},
		{"file:///srv/a/../vault", "/srv/vault"},
	} {
		got, err := PathFromURL(tc.in)
		if err != nil || got != filepath.FromSlash(tc.want) {
			t.Errorf("PathFromURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "/abs/path", "vault.age", "https://vault.example/v1", "s3://bucket/vault", "vault://x",
		"file:relative/path", "file://host/path", "file://user@localhost/p", "file:///p?x=1", "file:///p#frag",
		"file:///", "file:///dir/", "file://", "file:///a%00b", "file:///%zz",
	} {
		if got, err := PathFromURL(in); !errors.Is(err, ErrUnsupportedURL) {
			t.Errorf("PathFromURL(%q) = %q, %v; want ErrUnsupportedURL", in, got, err)
		}
	}
}
