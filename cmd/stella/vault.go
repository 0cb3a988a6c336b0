package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"stellaops.io/stella/display"
	"stellaops.io/stella/vault"
)

// maxSecretValue bounds a value read by `vault put` (the vault's own limit).
const maxSecretValue = 1 << 20

func (s *session) vaultCommand() *cli.Command {
	return &cli.Command{
		Name:  "vault",
		Usage: "keep secrets and signing keys in the sealed vault",
		Description: `The sealed vault is one age-encrypted file (mode 0600) holding named secrets and
private signing keys. Its location is --vault, else $TASKRUNNER_SEALED_VAULT_URL
(file:///abs/path), else the config's vault (relative to the home folder), else
<home>/vault.age. It is unlocked by --identity (an age identity file), else
$STELLA_VAULT_IDENTITY_FILE, else the passphrase in $STELLA_VAULT_PASSPHRASE_FILE,
else a passphrase typed at the terminal. Values are never printed, except by
` + "`get --reveal`" + `; list shows at most their last four characters.

Examples:
   stella vault init
   printf %s "$TOKEN" | stella vault put --scope rotate-creds rotate-creds/api-token
   stella vault list
   stella vault get --reveal rotate-creds/api-token > token.txt
   stella vault --vault /media/ops/vault.age --identity ops.agekey list`,
		Flags: vaultFlags(),
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create an empty vault",
				Description: `Creates the vault file (mode 0600; its folder 0700) sealed with a passphrase, asked
twice on a terminal, or to the recipients of an age identity file. An existing
file is never replaced.

Examples:
   stella vault init
   STELLA_VAULT_PASSPHRASE_FILE=/run/secrets/vault-pass stella vault init
   age-keygen -o ops.agekey && stella vault init --identity ops.agekey`,
				Flags:  vaultFlags(),
				Action: action(s.vaultInit),
			},
			{
				Name:      "put",
				Usage:     "store a secret read from stdin or a file",
				ArgsUsage: "NAME",
				Description: `Stores or replaces the secret NAME. The value is read from --from-file or stdin,
byte for byte (a trailing newline is kept: use printf or echo -n), never from an
argument, which would end up in shell history and process lists. A replaced
secret keeps its creation time.

Examples:
   printf %s "$TOKEN" | stella vault put rotate-creds/api-token
   stella vault put --from-file id_ed25519 --scope run --meta owner=ops ops/ssh-deploy-key`,
				Flags: append(vaultFlags(),
					&cli.StringFlag{Name: "scope", Usage: "free-form scope recorded with the secret (for example run or a pack name)"},
					&cli.GenericFlag{Name: "meta", Usage: "metadata KEY=VALUE (repeatable)", Value: &keyValues{}},
					&cli.StringFlag{Name: "from-file", Usage: "read the value from this file instead of stdin", TakesFile: true},
				),
				Action: action(s.vaultPut),
			},
			{
				Name:      "get",
				Usage:     "show a secret's metadata, or its value with --reveal",
				ArgsUsage: "NAME",
				Description: `Shows the secret's scope, metadata, last four characters and times. With
--reveal, writes the value alone to stdout, byte for byte with no newline added
(also with --output json), for piping into a file or another program.

Examples:
   stella vault get rotate-creds/api-token
   stella vault get --reveal rotate-creds/api-token > token.txt`,
				Flags: append(vaultFlags(),
					&cli.BoolFlag{Name: "reveal", Usage: "write the value to stdout"},
				),
				Action: action(s.vaultGet),
			},
			{
				Name:  "list",
				Usage: "list secrets: name, scope, last four characters, updated time",
				Description: `Lists every secret without its value: LAST4 is the last four characters of
values of twelve or more printable characters, else ****.

Examples:
   stella vault list
   stella --output json vault list`,
				Flags:  vaultFlags(),
				Action: action(s.vaultList),
			},
			{
				Name:      "rm",
				Usage:     "remove a secret",
				ArgsUsage: "NAME",
				Description: `Examples:
   stella vault rm rotate-creds/api-token`,
				Flags:  vaultFlags(),
				Action: action(s.vaultRemove),
			},
			{
				Name:  "passwd",
				Usage: "re-seal the vault with a new passphrase or identity file",
				Description: `Re-encrypts the vault, unchanged, to a new passphrase (--new-passphrase-file, or
asked twice on a terminal) or to the recipients of --new-identity. Afterwards the
old passphrase or identity no longer opens it.

Examples:
   stella vault passwd
   stella vault passwd --new-passphrase-file /run/secrets/new-pass
   stella vault passwd --new-identity ops-2025.agekey`,
				Flags: append(vaultFlags(),
					&cli.StringFlag{Name: "new-passphrase-file", Usage: "file holding the new passphrase (one trailing newline is ignored)", TakesFile: true},
					&cli.StringFlag{Name: "new-identity", Usage: "age identity file to seal the vault to instead of a passphrase", TakesFile: true},
				),
				Action: action(s.vaultPasswd),
			},
			{
				Name:  "keys",
				Usage: "list the signing keys kept in the vault",
				Description: `Lists the private signing keys made by ` + "`stella key generate --vault NAME`" + `, by name,
algorithm and key id; the private keys themselves are never shown. Use them as
--key vault:NAME.

Examples:
   stella vault keys
   stella --output json vault keys`,
				Flags:  vaultFlags(),
				Action: action(s.vaultKeys),
			},
		},
	}
}

// keyValues is a repeatable KEY=VALUE flag. Unlike a string slice flag it
// never splits a value on commas.
type keyValues struct{ m map[string]string }

func (kv *keyValues) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("expected KEY=VALUE")
	}
	if kv.m == nil {
		kv.m = map[string]string{}
	}
	if _, dup := kv.m[k]; dup {
		return fmt.Errorf("key %q given twice", k)
	}
	kv.m[k] = val
	return nil
}

func (kv *keyValues) String() string {
	if kv == nil {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kv.m)) {
		parts = append(parts, k+"="+kv.m[k])
	}
	return strings.Join(parts, ",")
}

// vaultRef is how results name the vault.
type vaultRef struct {
	Vault  string `json:"vault"`
	Unlock string `json:"unlock"`
}

// unlockKind names what vaultUnlocker will use, for messages.
func (s *session) unlockKind(identity string) string {
	if identity != "" || s.getenv(envVaultIdentityFile) != "" {
		return "identity file"
	}
	return "passphrase"
}

func (s *session) vaultInit(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	va := vaultAccessFrom(c)
	path, err := s.vaultPath(va.path)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("init vault %s: %w", path, vault.ErrExists)
	}
	u, err := s.vaultUnlocker(va.identity, "New vault passphrase: ", true)
	if err != nil {
		return err
	}
	if err := vault.Init(ctx, path, u); err != nil {
		return err
	}
	res := vaultRef{Vault: path, Unlock: s.unlockKind(va.identity)}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "created vault %s, sealed %s\n", path, sealedWith(res.Unlock))
	})
}

// secretInfo is the JSON shape of a secret without its value.
type secretInfo struct {
	Name    string            `json:"name"`
	Scope   string            `json:"scope"`
	Last4   string            `json:"last4"`
	Meta    map[string]string `json:"meta,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
}

func infoOf(v *vault.Vault, name string) (secretInfo, bool) {
	for _, si := range v.List() {
		if si.Name == name {
			return secretInfo{Name: si.Name, Scope: si.Scope, Last4: si.Hint, Created: si.Created.UTC(), Updated: si.Updated.UTC()}, true
		}
	}
	return secretInfo{}, false
}

func (s *session) vaultPut(ctx context.Context, c *cli.Context) error {
	switch {
	case c.NArg() == 0:
		return usageError("vault put: expected the secret NAME; the value is read from stdin or --from-file")
	case c.NArg() > 1:
		// Never repeat the extra argument: it is probably the value.
		return usageError("vault put: takes one NAME; the value is read from stdin or --from-file, never from an argument, which would be kept in shell history and visible in process lists")
	}
	name := c.Args().First()
	var value []byte
	var err error
	if f := c.String("from-file"); f != "" {
		value, err = s.readFileArg(f, maxSecretValue)
	} else {
		value, err = readLimited(s.stdin, "stdin", maxSecretValue)
	}
	if err != nil {
		return err
	}
	defer clear(value)
	var meta map[string]string
	if kv, ok := c.Generic("meta").(*keyValues); ok {
		meta = kv.m
	}
	v, err := s.openVault(ctx, vaultAccessFrom(c))
	if err != nil {
		return err
	}
	defer v.Close()
	if err := v.Put(ctx, name, value, c.String("scope"), meta, s.now().Truncate(time.Second)); err != nil {
		return err
	}
	info, _ := infoOf(v, name)
	info.Meta = meta
	return s.emit(info, func(w io.Writer) {
		fmt.Fprintf(w, "stored secret %s (%d bytes, last4 %s) in %s\n", name, len(value), info.Last4, v.Path())
	})
}

func (s *session) vaultGet(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one secret NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	v, err := s.openVault(ctx, vaultAccessFrom(c))
	if err != nil {
		return err
	}
	defer v.Close()
	sec, err := v.Get(name)
	if err != nil {
		return err
	}
	defer sec.Value.Wipe()
	if c.Bool("reveal") {
		_, err := s.stdout.Write(sec.Value.Reveal())
		return err
	}
	info, _ := infoOf(v, name)
	info.Meta = sec.Meta
	return s.emit(info, func(w io.Writer) {
		fmt.Fprintf(w, "name:    %s\n", display.Line(info.Name))
		fmt.Fprintf(w, "scope:   %s\n", orDash(info.Scope))
		fmt.Fprintf(w, "last4:   %s\n", info.Last4)
		fmt.Fprintf(w, "created: %s\n", info.Created.Format(time.RFC3339))
		fmt.Fprintf(w, "updated: %s\n", info.Updated.Format(time.RFC3339))
		for _, k := range slices.Sorted(maps.Keys(info.Meta)) {
			fmt.Fprintf(w, "meta:    %s=%s\n", display.Line(k), display.Line(info.Meta[k]))
		}
		fmt.Fprintf(w, "(value hidden; use --reveal to print it)\n")
	})
}

func (s *session) vaultList(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	v, err := s.openVault(ctx, vaultAccessFrom(c))
	if err != nil {
		return err
	}
	defer v.Close()
	res := struct {
		Vault   string       `json:"vault"`
		Secrets []secretInfo `json:"secrets"`
	}{Vault: v.Path(), Secrets: []secretInfo{}}
	for _, si := range v.List() {
		res.Secrets = append(res.Secrets, secretInfo{Name: si.Name, Scope: si.Scope, Last4: si.Hint, Created: si.Created.UTC(), Updated: si.Updated.UTC()})
	}
	return s.emit(res, func(w io.Writer) {
		if len(res.Secrets) == 0 {
			fmt.Fprintf(w, "no secrets in %s\n", res.Vault)
			return
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPE\tLAST4\tUPDATED")
		for _, si := range res.Secrets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", display.Line(si.Name), orDash(si.Scope), si.Last4, si.Updated.Format(time.RFC3339))
		}
		tw.Flush()
	})
}

func (s *session) vaultRemove(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one secret NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	v, err := s.openVault(ctx, vaultAccessFrom(c))
	if err != nil {
		return err
	}
	defer v.Close()
	if err := v.Remove(ctx, name); err != nil {
		return err
	}
	res := struct {
		Removed string `json:"removed"`
		Vault   string `json:"vault"`
	}{name, v.Path()}
	return s.emit(res, func(w io.Writer) { fmt.Fprintf(w, "removed secret %s from %s\n", name, v.Path()) })
}

func (s *session) vaultPasswd(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	newPassFile, newIdentity := c.String("new-passphrase-file"), c.String("new-identity")
	if newPassFile != "" && newIdentity != "" {
		return usageError("vault passwd: give --new-passphrase-file or --new-identity, not both")
	}
	v, err := s.openVault(ctx, vaultAccessFrom(c))
	if err != nil {
		return err
	}
	defer v.Close()
	var next vault.Unlocker
	kind := "passphrase"
	switch {
	case newIdentity != "":
		data, err := s.readSecretFile(newIdentity)
		if err != nil {
			return err
		}
		defer clear(data)
		next, kind = vault.IdentityFile(data), "identity file"
	case newPassFile != "":
		p, err := s.readPassphraseFile(newPassFile)
		if err != nil {
			return err
		}
		defer clear(p)
		next = vault.Passphrase(p)
	default:
		p, err := s.promptPassphrase("New vault passphrase: ", true, "use --new-passphrase-file or --new-identity")
		if err != nil {
			return err
		}
		defer clear(p)
		next = vault.Passphrase(p)
	}
	if err := v.Passwd(ctx, next); err != nil {
		return err
	}
	res := vaultRef{Vault: v.Path(), Unlock: kind}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "re-sealed vault %s %s; the old passphrase or identity no longer opens it\n", v.Path(), sealedWith(kind))
	})
}

// vaultKeyInfo is the JSON shape of a signing key kept in the vault.
type vaultKeyInfo struct {
	Name      string    `json:"name"`
	Algorithm string    `json:"algorithm"`
	KeyID     string    `json:"keyId"`
	Ref       string    `json:"ref"`
	Created   time.Time `json:"created"`
}

func (s *session) vaultKeys(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	v, err := s.openVault(ctx, vaultAccessFrom(c))
	if err != nil {
		return err
	}
	defer v.Close()
	res := struct {
		Vault string         `json:"vault"`
		Keys  []vaultKeyInfo `json:"keys"`
	}{Vault: v.Path(), Keys: []vaultKeyInfo{}}
	for _, k := range v.Keys() {
		res.Keys = append(res.Keys, vaultKeyInfo{Name: k.Name, Algorithm: k.Algorithm, KeyID: k.KeyID, Ref: vault.RefPrefix + k.Name, Created: k.Created.UTC()})
	}
	return s.emit(res, func(w io.Writer) {
		if len(res.Keys) == 0 {
			fmt.Fprintf(w, "no signing keys in %s\n", res.Vault)
			return
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tALGORITHM\tKEY ID\tCREATED")
		for _, k := range res.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", display.Line(k.Name), k.Algorithm, k.KeyID, k.Created.Format(time.RFC3339))
		}
		tw.Flush()
	})
}

// sealedWith phrases an unlock kind for messages.
func sealedWith(kind string) string {
	if kind == "passphrase" {
		return "with a passphrase"
	}
	return "to an identity file"
}

// orDash renders a one-line field for text output (display.Line), or "-"
// when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return display.Line(s)
}
