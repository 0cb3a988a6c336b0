package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/internal/safefile"
	"stellaops.io/stella/keys"
	"stellaops.io/stella/vault"
)

// maxKeyFile bounds what is read as a key file; keys are under 1 KiB.
const maxKeyFile = 64 << 10

// keyFileMarker starts every private key file (an armored age file, see
// package keys); anything else is refused before asking for a passphrase.
const keyFileMarker = "-----BEGIN AGE ENCRYPTED FILE-----"

func (s *session) keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "generate and inspect signing keys",
		Description: `Signing keys are ECDSA P-256 (the default) or Ed25519. A key lives either in two
files, NAME.key (the private key, encrypted with a passphrase; mode 0600) and
NAME.pub (the public key, PKIX PEM), or in the sealed vault, with only NAME.pub
written. Commands that sign take --key FILE.key or --key vault:NAME.

Examples:
   stella key generate release-signer
   stella key generate --vault approver-alice
   stella key show vault:approver-alice`,
		Subcommands: []*cli.Command{
			{
				Name:      "generate",
				Usage:     "generate a key pair",
				ArgsUsage: "[NAME]",
				Description: `Writes DIR/NAME.key, encrypted with the passphrase in $STELLA_KEY_PASSPHRASE_FILE
or one asked twice on a terminal, and DIR/NAME.pub. With --vault NAME the private
key goes into the sealed vault instead (found and unlocked as for ` + "`stella vault`" + `)
and only DIR/NAME.pub is written. Nothing is overwritten. Prints the key id
(sha256 of the public key's DER SubjectPublicKeyInfo).

Examples:
   stella key generate release-signer
   stella key generate --algorithm ed25519 --dir ./keys ci-signer
   stella key generate --vault approver-alice
   stella key generate --vault approver-alice --vault-file /media/alice/vault.age`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "algorithm", Usage: "ecdsa-p256 or ed25519", Value: string(keys.AlgECDSAP256)},
					&cli.StringFlag{Name: "dir", Usage: "folder for NAME.key and NAME.pub", DefaultText: "<home>/keys"},
					&cli.StringFlag{Name: "vault", Usage: "keep the private key in the sealed vault under this `NAME` (then NAME may be omitted)"},
					&cli.StringFlag{Name: "vault-file", Usage: "vault file for --vault", DefaultText: "$" + envVaultURL + " (file://), config vault, else <home>/" + defaultVaultFile, TakesFile: true},
					&cli.StringFlag{Name: "vault-identity", Usage: "age identity file that unlocks the vault", DefaultText: "$" + envVaultIdentityFile, TakesFile: true},
				},
				Action: action(s.keyGenerate),
			},
			{
				Name:      "show",
				Usage:     "show a key's id and algorithm",
				ArgsUsage: "FILE|vault:NAME",
				Description: `Shows the key id, algorithm and public key of a public key file, a private key
file (asking for its passphrase, or reading $STELLA_KEY_PASSPHRASE_FILE) or a
key kept in the vault.

Examples:
   stella key show ~/.stella/keys/release-signer.pub
   stella key show ~/.stella/keys/release-signer.key
   stella key show vault:approver-alice`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "vault-file", Usage: "vault file for vault:NAME", DefaultText: "$" + envVaultURL + " (file://), config vault, else <home>/" + defaultVaultFile, TakesFile: true},
					&cli.StringFlag{Name: "vault-identity", Usage: "age identity file that unlocks the vault", DefaultText: "$" + envVaultIdentityFile, TakesFile: true},
				},
				Action: action(s.keyShow),
			},
		},
	}
}

// keyInfo is the JSON shape of a key.
type keyInfo struct {
	Name       string `json:"name,omitempty"`
	Algorithm  string `json:"algorithm"`
	KeyID      string `json:"keyId"`
	PublicKey  string `json:"publicKey,omitempty"`  // path of NAME.pub
	PrivateKey string `json:"privateKey,omitempty"` // path of NAME.key or vault:NAME
	Vault      string `json:"vault,omitempty"`
	Source     string `json:"source,omitempty"` // key show: public key file, private key file, vault key
	PublicPEM  string `json:"publicPem,omitempty"`
}

func (s *session) keyGenerate(ctx context.Context, c *cli.Context) error {
	if c.NArg() > 1 {
		return usageError("key generate: expected one key NAME")
	}
	name, vname := c.Args().First(), c.String("vault")
	switch {
	case name == "" && vname == "":
		return usageError("key generate: expected a key NAME, or --vault NAME to keep the private key in the vault")
	case name == "":
		name = vname
	case vname != "" && vname != name:
		return usageError("key generate: NAME and --vault NAME differ; give the name once, as --vault NAME")
	}
	alg, err := keys.ParseAlgorithm(c.String("algorithm"))
	if err != nil {
		return err
	}
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("key name %q: %w", name, keys.ErrInvalidName)
	}
	dir := c.String("dir")
	if dir == "" {
		dir = filepath.Join(s.home, "keys")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := keys.Generate(alg)
	if err != nil {
		return err
	}
	res := keyInfo{Name: name, Algorithm: string(p.Algorithm()), KeyID: p.ID(), PublicKey: filepath.Join(dir, name+keys.PublicKeySuffix)}
	if vname != "" {
		if err := s.generateIntoVault(ctx, c, p, name, res.PublicKey); err != nil {
			return err
		}
		res.PrivateKey = vault.RefPrefix + name
		res.Vault, _ = s.vaultPath(c.String("vault-file"))
	} else {
		pass, err := s.passphrase(envKeyPassphraseFile, "Passphrase for new key "+name+": ", true, "")
		if err != nil {
			return err
		}
		defer clear(pass)
		if err := keys.WriteFiles(dir, name, p, pass); err != nil {
			return err
		}
		res.PrivateKey = filepath.Join(dir, name+keys.PrivateKeySuffix)
	}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "generated %s key %s\n", res.Algorithm, name)
		fmt.Fprintf(w, "key id:      %s\n", res.KeyID)
		fmt.Fprintf(w, "public key:  %s\n", res.PublicKey)
		if res.Vault != "" {
			fmt.Fprintf(w, "private key: %s (in vault %s)\n", res.PrivateKey, res.Vault)
		} else {
			fmt.Fprintf(w, "private key: %s (encrypted with its passphrase)\n", res.PrivateKey)
		}
		fmt.Fprintf(w, "next, on each machine that verifies: stella trust add --key %s --role publisher|Packs.Approve|Packs.Run %s\n", res.PublicKey, name)
	})
}

// generateIntoVault keeps p's private key in the vault under name and
// writes its public key to pubPath. The public file is checked first and
// written last, so a refusal leaves nothing behind.
func (s *session) generateIntoVault(ctx context.Context, c *cli.Context, p *keys.Pair, name, pubPath string) error {
	if _, err := os.Lstat(pubPath); err == nil {
		return fmt.Errorf("%s: %w", pubPath, keys.ErrExists)
	}
	v, err := s.openVault(ctx, vaultAccess{path: c.String("vault-file"), identity: c.String("vault-identity")})
	if err != nil {
		return err
	}
	defer v.Close()
	priv, err := keys.MarshalPrivatePEM(p)
	if err != nil {
		return err
	}
	defer clear(priv)
	if err := v.PutKey(ctx, name, priv, string(p.Algorithm()), p.ID(), p.PublicPEM(), s.now().Truncate(time.Second)); err != nil {
		return err
	}
	return safefile.WriteBytes(pubPath, p.PublicPEM(), 0o644)
}

func (s *session) keyShow(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "a key FILE or vault:NAME"); err != nil {
		return err
	}
	ref := c.Args().First()
	va := vaultAccess{path: c.String("vault-file"), identity: c.String("vault-identity")}
	var res keyInfo
	if name, ok := strings.CutPrefix(ref, vault.RefPrefix); ok {
		// The signing path itself, so a key that shows is a key that signs.
		p, err := s.loadSignerFrom(ctx, ref, va)
		if err != nil {
			return err
		}
		path, _ := s.vaultPath(va.path)
		res = keyInfo{Name: name, Algorithm: string(p.Algorithm()), KeyID: p.ID(), PrivateKey: ref, Vault: path, Source: "vault key", PublicPEM: string(p.PublicPEM())}
	} else {
		data, err := s.readFileArg(ref, maxKeyFile)
		if err != nil {
			return err
		}
		pub, id, err := keys.ParsePublic(data)
		switch {
		case err == nil:
			res = keyInfo{Algorithm: algorithmOf(pub), KeyID: id, PublicKey: ref, Source: "public key file", PublicPEM: string(data)}
		case errors.Is(err, keys.ErrNotAPublicKey):
			p, err := s.openKeyFile(ref, data)
			if err != nil {
				return err
			}
			res = keyInfo{Algorithm: string(p.Algorithm()), KeyID: p.ID(), PrivateKey: ref, Source: "private key file", PublicPEM: string(p.PublicPEM())}
		default:
			return fmt.Errorf("%s: %w", ref, err)
		}
	}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "%s: %s\n", ref, res.Source)
		fmt.Fprintf(w, "key id:    %s\n", res.KeyID)
		fmt.Fprintf(w, "algorithm: %s\n", res.Algorithm)
		fmt.Fprintf(w, "\n%s", res.PublicPEM)
	})
}

// algorithmOf names a public key's algorithm as keys.Algorithm does.
func algorithmOf(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return string(keys.AlgECDSAP256)
	case ed25519.PublicKey:
		return string(keys.AlgEd25519)
	}
	return "unknown"
}

// loadSigner returns the signing key a command's --key names: vault:NAME, a
// key kept in the sealed vault (found and unlocked as for `stella vault`),
// or the path of a private key file, opened with the passphrase in
// STELLA_KEY_PASSPHRASE_FILE or one asked on the terminal. Every signing
// command uses it.
func (s *session) loadSigner(ctx context.Context, ref string) (*keys.Pair, error) {
	return s.loadSignerFrom(ctx, ref, vaultAccess{})
}

func (s *session) loadSignerFrom(ctx context.Context, ref string, va vaultAccess) (*keys.Pair, error) {
	if ref == "" {
		return nil, usageError("no signing key: give --key FILE.key or --key vault:NAME")
	}
	if name, ok := strings.CutPrefix(ref, vault.RefPrefix); ok {
		v, err := s.openVault(ctx, va)
		if err != nil {
			return nil, err
		}
		defer v.Close()
		e, err := v.Key(name)
		if err != nil {
			return nil, fmt.Errorf("vault %s: %w", v.Path(), err)
		}
		defer e.PrivatePEM.Wipe()
		p, err := keys.ParsePrivatePEM(e.PrivatePEM.Reveal())
		if err != nil {
			return nil, fmt.Errorf("vault key %q: %w", name, err)
		}
		return p, nil
	}
	data, err := s.readFileArg(ref, maxKeyFile)
	if err != nil {
		return nil, err
	}
	return s.openKeyFile(ref, data)
}

// openKeyFile decrypts a private key file read from path.
func (s *session) openKeyFile(path string, data []byte) (*keys.Pair, error) {
	if !bytes.Contains(data, []byte(keyFileMarker)) {
		if bytes.Contains(data, []byte("-----BEGIN PUBLIC KEY-----")) {
			return nil, fmt.Errorf("%s: a public key, which cannot sign: give its private key (NAME.key, or vault:NAME): %w", path, keys.ErrNotAKey)
		}
		return nil, fmt.Errorf("%s: not a public key nor a private key file: %w", path, keys.ErrNotAKey)
	}
	pass, err := s.passphrase(envKeyPassphraseFile, "Passphrase for key "+path+": ", false, "")
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	p, err := keys.ParsePrivate(data, pass)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return p, nil
}
