package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"testing"
)

func TestMain(m *testing.M) {
	// age's default scrypt cost takes about a second per key file; tests
	// use a cheap one. The file format is the same.
	productionWorkFactor = SetScryptWorkFactor(10)
	m.Run()
}

// productionWorkFactor is the scrypt cost key files get outside tests.
var productionWorkFactor int

// TestProductionScryptWorkFactor: outside tests, a private key file is
// sealed with age's default scrypt cost (tests lower it to run fast).
func TestProductionScryptWorkFactor(t *testing.T) {
	if productionWorkFactor != 18 {
		t.Errorf("key files are sealed with scrypt cost %d, want age's default 18", productionWorkFactor)
	}
}

func TestParseAlgorithm(t *testing.T) {
	tests := []struct {
		in      string
		want    Algorithm
		wantErr error
	}{
		{"", AlgECDSAP256, nil},
		{"ecdsa-p256", AlgECDSAP256, nil},
		{"ED25519", AlgEd25519, nil},
		{"rsa", "", ErrUnknownAlgorithm},
		{"ecdsa-p384", "", ErrUnknownAlgorithm},
	}
	for _, tt := range tests {
		got, err := ParseAlgorithm(tt.in)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestGenerate(t *testing.T) {
	for _, alg := range []Algorithm{"", AlgECDSAP256, AlgEd25519} {
		t.Run(string(alg), func(t *testing.T) {
			p, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			want := alg
			if want == "" {
				want = AlgECDSAP256
			}
			if p.Algorithm() != want {
				t.Errorf("Algorithm() = %q, want %q", p.Algorithm(), want)
			}
			// The id is sha256 of the DER SPKI inside the PEM.
			block, _ := pem.Decode(p.PublicPEM())
			if block == nil || block.Type != "PUBLIC KEY" {
				t.Fatalf("PublicPEM is not a PUBLIC KEY block:\n%s", p.PublicPEM())
			}
			sum := sha256.Sum256(block.Bytes)
			if wantID := "sha256:" + hex.EncodeToString(sum[:]); p.ID() != wantID {
				t.Errorf("ID() = %s, want %s", p.ID(), wantID)
			}
			pub, id, err := ParsePublic(p.PublicPEM())
			if err != nil {
				t.Fatal(err)
			}
			if id != p.ID() {
				t.Errorf("ParsePublic id = %s, want %s", id, p.ID())
			}
			if !p.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Error("ParsePublic returned a different key")
			}
			other, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			if other.ID() == p.ID() {
				t.Error("two generated keys share an id")
			}
		})
	}
}

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParsePublicRefuses(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	good, err := Generate(AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := MarshalPrivatePEM(good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotAPublicKey},
		{"garbage", []byte("not a key"), ErrNotAPublicKey},
		{"private key", privPEM, ErrNotAPublicKey},
		{"trailing data", append(good.PublicPEM(), "junk"...), ErrNotAPublicKey},
		{"two keys", append(good.PublicPEM(), good.PublicPEM()...), ErrNotAPublicKey},
		{"bad der", pemOf(t, "PUBLIC KEY", []byte{1, 2, 3}), ErrNotAPublicKey},
		{"p-384", pemOf(t, "PUBLIC KEY", p384DER), ErrUnsupportedKey},
		{"rsa", pemOf(t, "PUBLIC KEY", rsaDER), ErrUnsupportedKey},
		{"pkcs1 rsa", pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), ErrNotAPublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParsePublic(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParsePublic: %v, want %v", err, tt.want)
			}
		})
	}
	_, err = Verifier(&p384.PublicKey)
	if !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("Verifier(P-384): %v, want ErrUnsupportedKey", err)
	}
	_, err = Verifier(ed25519.PublicKey(make([]byte, 5)))
	if !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("Verifier(short ed25519): %v, want ErrUnsupportedKey", err)
	}
}
