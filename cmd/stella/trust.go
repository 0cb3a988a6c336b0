package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gofrs/flock"
	"github.com/urfave/cli/v2"

	"stellaops.io/stella/approve"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/trust"
)

const (
	// trustFile is the trust store's name under the home folder.
	trustFile = "trust.json"
	// maxPublicKeyFile bounds what is read as a public key file.
	maxPublicKeyFile = 64 << 10
)

// errTrustBusy: another process held the trust store lock too long.
var errTrustBusy = errors.New("trust store is locked by another process")

func (s *session) trustCommand() *cli.Command {
	return &cli.Command{
		Name:  "trust",
		Usage: "manage the trust store: public keys, their roles and tenants",
		Description: `The trust store (<home>/trust.json) lists the public keys whose signatures this
machine accepts, each with a name, the roles it holds (publisher signs packs,
Packs.Approve signs gate approvals, Packs.Run signs run evidence) and the tenants it may act for ("*" for any).
Revoked keys stay listed so they cannot come back unnoticed. The store also
holds the site's approval policy (stella trust policy): which roles approve
gates, and whether a pack's signer may approve its own gates.

Examples:
   stella trust add --key release-signer.pub --role publisher release-signer
   stella trust add --key alice.pub --role Packs.Approve --tenant acme alice
   stella trust list
   stella trust revoke alice`,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "trust a public key under a name, with roles and tenants",
				ArgsUsage: "NAME",
				Description: `Adds the public key (PKIX PEM, as written by ` + "`stella key generate`" + `) under NAME.
A name or key already in the store, even revoked, is refused.

Examples:
   stella trust add --key release-signer.pub --role publisher release-signer
   stella trust add --key alice.pub --role Packs.Approve --tenant acme --tenant beta alice
   stella trust add --key ops.pub --role publisher --role Packs.Approve ops`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key", Usage: "public key file (PEM); required", TakesFile: true},
					&cli.StringSliceFlag{Name: "role", Usage: "role the key holds: publisher, Packs.Approve, Packs.Run or a declared approver role (repeatable); at least one"},
					&cli.StringSliceFlag{Name: "tenant", Usage: "tenant the key may act for, or \"*\" for any (repeatable)", Value: cli.NewStringSlice(trust.AnyTenant)},
				},
				Action: action(s.trustAdd),
			},
			{
				Name:  "list",
				Usage: "list trusted keys, revoked ones included",
				Description: `Examples:
   stella trust list
   stella --output json trust list`,
				Action: action(s.trustList),
			},
			{
				Name:      "rm",
				Usage:     "remove a key from the trust store",
				ArgsUsage: "NAME",
				Description: `Removes the key entirely; its signatures are then from an unknown key. Prefer
revoke, which keeps the key listed so it cannot be added again unnoticed.

Examples:
   stella trust rm old-signer`,
				Action: action(s.trustRemove),
			},
			{
				Name:      "revoke",
				Usage:     "revoke a key: its signatures no longer verify",
				ArgsUsage: "NAME",
				Description: `Approvals the key made stop counting at once: a gate they satisfied waits
again, and the approval ledger records a void entry for each.

Examples:
   stella trust revoke alice`,
				Action: action(s.trustRevoke),
			},
			{
				Name:  "policy",
				Usage: "show or change the site's approval policy: approver roles and self-approval",
				Description: `Gates are approved by keys holding Packs.Approve, and by keys holding a role
the site declares here as an approver role (a pack's gate names the role it
needs; a role the site did not declare approves nothing). publisher and
Packs.Run can never be approver roles. A key may not approve a gate of a pack
it signed unless self-approval is allowed here (denied by default).
Without flags, prints the policy.

Examples:
   stella trust policy
   stella trust policy --add-approver-role Change.Board
   stella trust add --key cab.pub --role Change.Board --tenant acme cab-chair
   stella trust policy --remove-approver-role Change.Board
   stella trust policy --self-approval allow`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "add-approver-role", Usage: "declare ROLE an approver role (repeatable)"},
					&cli.StringSliceFlag{Name: "remove-approver-role", Usage: "withdraw a declared approver role no key holds (repeatable)"},
					&cli.StringFlag{Name: "self-approval", Usage: "allow or deny: whether a key may approve a gate of a pack it signed"},
				},
				Action: action(s.trustPolicy),
			},
		},
	}
}

// trustPath is the trust store file.
func (s *session) trustPath() string { return filepath.Join(s.home, trustFile) }

// trustStore loads the trust store for reading (a missing file is an empty
// store). Commands that change it use updateTrust.
func (s *session) trustStore() (*trust.Store, error) {
	return trust.Load(s.trustPath())
}

// updateTrust loads the trust store, applies change and saves it, all under
// an exclusive lock on <home>/trust.json.lock, so two processes changing the
// store at once never lose each other's change. The wait for the lock is
// bounded by the config's lockTimeout (default 30s). Nothing is saved when
// change fails.
func (s *session) updateTrust(ctx context.Context, change func(*trust.Store) error) error {
	if err := os.MkdirAll(s.home, 0o700); err != nil {
		return err
	}
	path := s.trustPath()
	timeout := configuredLockTimeout(s.config)
	fl := flock.New(path+".lock", flock.SetPermissions(0o600))
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := fl.TryLockContext(wctx, 25*time.Millisecond)
	if err != nil || !ok {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) || err == nil {
			return fmt.Errorf("%s: %w after waiting %s", path, errTrustBusy, timeout)
		}
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer fl.Unlock()
	st, err := trust.Load(path)
	if err != nil {
		return err
	}
	if err := change(st); err != nil {
		return err
	}
	return st.Save(path)
}

// trustedKey is the JSON shape of a trusted key.
type trustedKey struct {
	Name      string     `json:"name"`
	KeyID     string     `json:"keyId"`
	Roles     []string   `json:"roles"`
	Tenants   []string   `json:"tenants"`
	Added     time.Time  `json:"added"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

func trustedKeyOf(k trust.Key) trustedKey {
	t := trustedKey{Name: k.Name, KeyID: k.KeyID, Roles: k.Roles, Tenants: k.Tenants, Added: k.Added.UTC(), Revoked: k.Revoked}
	if k.Revoked {
		at := k.RevokedAt.UTC()
		t.RevokedAt = &at
	}
	return t
}

func (s *session) trustAdd(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one key NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	roles, tenants := c.StringSlice("role"), c.StringSlice("tenant")
	switch {
	case c.String("key") == "":
		return usageError("trust add: --key PUB.pem is required")
	case len(roles) == 0:
		return usageError("trust add: give at least one --role (publisher, Packs.Approve or Packs.Run)")
	}
	pem, err := s.readFileArg(c.String("key"), maxPublicKeyFile)
	if err != nil {
		return err
	}
	var added trust.Key
	err = s.updateTrust(ctx, func(st *trust.Store) error {
		if err := st.Add(name, pem, roles, tenants, s.now().Truncate(time.Second)); err != nil {
			return err
		}
		added, _ = st.Get(name)
		return nil
	})
	if err != nil {
		return err
	}
	res := trustedKeyOf(added)
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "trusted key %s (%s) for roles %s, tenants %s\n", display.Line(res.Name), res.KeyID, display.Line(strings.Join(res.Roles, ",")), display.Line(strings.Join(res.Tenants, ",")))
	})
}

func (s *session) trustList(_ context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	st, err := s.trustStore()
	if err != nil {
		return err
	}
	res := struct {
		Keys []trustedKey `json:"keys"`
	}{Keys: []trustedKey{}}
	for _, k := range st.List() {
		res.Keys = append(res.Keys, trustedKeyOf(k))
	}
	return s.emit(res, func(w io.Writer) {
		if len(res.Keys) == 0 {
			fmt.Fprintf(w, "no trusted keys in %s\n", s.trustPath())
			return
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKEY ID\tROLES\tTENANTS\tADDED\tSTATUS")
		for _, k := range res.Keys {
			status := "active"
			if k.Revoked {
				status = "revoked " + k.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", display.Line(k.Name), k.KeyID, display.Line(strings.Join(k.Roles, ",")), display.Line(strings.Join(k.Tenants, ",")), k.Added.Format(time.RFC3339), status)
		}
		tw.Flush()
	})
}

func (s *session) trustRemove(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one key NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	var removed trust.Key
	err := s.updateTrust(ctx, func(st *trust.Store) error {
		removed, _ = st.Get(name)
		return st.Remove(name)
	})
	if err != nil {
		return err
	}
	voided := s.recordVoids(ctx, removed.KeyID)
	res := struct {
		Removed string `json:"removed"`
		KeyID   string `json:"keyId"`
		Voided  int    `json:"voidedApprovals"`
	}{name, removed.KeyID, voided}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "removed key %s (%s) from the trust store\n", display.Line(name), removed.KeyID)
		if voided > 0 {
			fmt.Fprintf(w, "%d recorded approval(s) by it no longer count\n", voided)
		}
	})
}

func (s *session) trustRevoke(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one key NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	var revoked trust.Key
	err := s.updateTrust(ctx, func(st *trust.Store) error {
		if err := st.Revoke(name, s.now().Truncate(time.Second)); err != nil {
			return err
		}
		revoked, _ = st.Get(name)
		return nil
	})
	if err != nil {
		return err
	}
	res := struct {
		trustedKey
		Voided int `json:"voidedApprovals"`
	}{trustedKeyOf(revoked), s.recordVoids(ctx, revoked.KeyID)}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "revoked key %s (%s) at %s; its signatures no longer verify\n", display.Line(name), res.KeyID, res.RevokedAt.Format(time.RFC3339))
		if res.Voided > 0 {
			fmt.Fprintf(w, "%d recorded approval(s) by it no longer count\n", res.Voided)
		}
	})
}

// recordVoids brings the approval ledger up to date with the trust store
// just changed, when this home has a cache: every approval that no longer
// counts gets its void entry now rather than when next looked at. It
// returns how many live approvals by keyID are void. The change itself
// already holds (gate states are computed against the trust store), so a
// failure here is only a warning.
func (s *session) recordVoids(ctx context.Context, keyID string) int {
	if _, err := os.Stat(filepath.Join(s.home, "packs")); err != nil {
		return 0
	}
	ts, err := s.trustStore()
	if err == nil {
		var st *cache.Store
		if st, err = s.openCache(ctx); err == nil {
			var gates []approve.GateState
			if gates, err = approve.Gates(ctx, st, ts, approve.AllTenants, s.now()); err == nil {
				n := 0
				for _, g := range gates {
					for _, d := range g.Decisions {
						if d.KeyID == keyID && d.Void != "" && !s.now().After(d.ExpiresAt) {
							n++
						}
					}
				}
				return n
			}
		}
	}
	s.warnf("the approval ledger will record the approvals that no longer count when next read: %v", err)
	return 0
}

// policyView is the JSON shape of the site's approval policy.
type policyView struct {
	ApproverRoles     []string `json:"approverRoles"`
	AllowSelfApproval bool     `json:"allowSelfApproval"`
}

func (s *session) trustPolicy(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 0, "no arguments"); err != nil {
		return err
	}
	add, remove, self := c.StringSlice("add-approver-role"), c.StringSlice("remove-approver-role"), c.String("self-approval")
	if self != "" && self != "allow" && self != "deny" {
		return usageError(fmt.Sprintf("trust policy: --self-approval %q: want allow or deny", self))
	}
	var pol trust.Policy
	if len(add) == 0 && len(remove) == 0 && self == "" {
		st, err := s.trustStore()
		if err != nil {
			return err
		}
		pol = st.Policy()
	} else {
		err := s.updateTrust(ctx, func(st *trust.Store) error {
			p := st.Policy()
			p.ApproverRoles = append(p.ApproverRoles, add...)
			p.ApproverRoles = slices.DeleteFunc(p.ApproverRoles, func(r string) bool { return slices.Contains(remove, r) })
			if self != "" {
				p.AllowSelfApproval = self == "allow"
			}
			if err := st.SetPolicy(p); err != nil {
				return err
			}
			pol = st.Policy()
			return nil
		})
		if err != nil {
			return err
		}
	}
	res := policyView{ApproverRoles: slices.Concat(trust.DefaultApproverRoles, pol.ApproverRoles), AllowSelfApproval: pol.AllowSelfApproval}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "approver roles: %s\n", strings.Join(res.ApproverRoles, ", "))
		if res.AllowSelfApproval {
			fmt.Fprintln(w, "self-approval:  allowed (a key may approve gates of packs it signed)")
		} else {
			fmt.Fprintln(w, "self-approval:  denied (a key may not approve gates of packs it signed)")
		}
	})
}
