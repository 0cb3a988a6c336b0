package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"stellaops.io/stella/admission"
	"stellaops.io/stella/artifact"
	"stellaops.io/stella/bundle"
	"stellaops.io/stella/cache"
	"stellaops.io/stella/display"
	"stellaops.io/stella/mirror"
)

func accessFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "plain-http", Usage: "talk HTTP, not HTTPS (a registry on loopback)"},
		&cli.StringFlag{Name: "ca-file", Usage: "PEM file of a private CA that signs the registry's certificate"},
		&cli.StringFlag{Name: "cert-file", Usage: "PEM client certificate, for registries that ask for one"},
		&cli.StringFlag{Name: "key-file", Usage: "PEM key of --cert-file"},
	}
}

// checkBlobsFlag is the flag of every command that pushes from the cache.
func checkBlobsFlag() cli.Flag {
	return &cli.BoolFlag{Name: "check-blobs", Usage: "check every blob under a manifest the registry already has and send again one it lacks (default: trust the manifest, as oras does)"}
}

func (s *session) mirrorCommands() []*cli.Command {
	policy := []cli.Flag{
		&cli.BoolFlag{Name: "require-signature", Usage: "refuse packs without a valid signature by a trusted publisher key (always on in sealed mode or with config requireSignature)"},
		&cli.BoolFlag{Name: "insecure-skip-signature", Usage: "do not check signatures (not allowed in sealed mode, with config requireSignature, or with --require-signature); printed and recorded in the import record"},
	}
	return []*cli.Command{
		{
			Name:      "push",
			Usage:     "push a pack from the cache, with its signatures, to a registry repository",
			ArgsUsage: "ID:VERSION REGISTRY/REPOSITORY[:TAG]",
			Description: `The tag defaults to the pack's version. Blobs the registry has are not sent again.
When the registry already has the pack's manifest (by digest), it is trusted as oras
does and no blob under it is checked; --check-blobs checks every blob and sends again
one the registry lacks (a blob deleted from its storage). The output says which.
A pull by tag admits a pack only from <prefix>/<name>:<version> (its signed name); a pack
pushed under another repository or tag can be pulled by digest from <prefix>/<name>.

Examples:
   stella pack push rotate-registry-credentials:1.3.0 registry.sealed.local:5000/packs/rotate-registry-credentials
   stella pack push --plain-http backup-database:0.4.2 127.0.0.1:5000/packs/backup-database`,
			Flags:  append([]cli.Flag{checkBlobsFlag()}, accessFlags()...),
			Action: action(s.packPush),
		},
		{
			Name:  "mirror",
			Usage: "move packs between registries, bundle files and the cache",
			Subcommands: []*cli.Command{
				{
					Name:      "pull",
					Usage:     "pull from a registry or a bundle file into the cache, and with --to into a registry",
					ArgsUsage: "SOURCE",
					Description: `SOURCE is a registry reference (host[:port]/repository[:tag|@digest]) or a bundle file
(or the first part of a split set). Every blob is verified while it streams; signatures
travel with their pack and are checked against the trust store. With --to, every pack
pulled is pushed to <to>/<pack name>:<version>, with its referrers.

Examples:
   stella pack mirror pull staging.example.org/packs/rotate-registry-credentials:1.3.0
   stella pack mirror pull --require-signature --to registry.sealed.local:5000/packs /media/usb0/packs.stella.tar.001`,
					Flags: append(append([]cli.Flag{
						&cli.StringFlag{Name: "to", Usage: "also push to this registry/repository prefix"},
						checkBlobsFlag(),
					}, policy...), accessFlags()...),
					Action: action(s.mirrorPull),
				},
				{
					Name:      "push",
					Usage:     "push packs from the cache, with their referrers, to <to>/<pack name>:<version>",
					ArgsUsage: "ID:VERSION...",
					Flags: append([]cli.Flag{
						&cli.StringFlag{Name: "to", Usage: "registry/repository prefix (required)"},
						checkBlobsFlag(),
					}, accessFlags()...),
					Action: action(s.mirrorPush),
				},
			},
		},
	}
}

func (s *session) registryCommand() *cli.Command {
	return &cli.Command{
		Name:  "registry",
		Usage: "registry credentials",
		Subcommands: []*cli.Command{
			{
				Name:      "login",
				Usage:     "store a registry credential in the Docker/Podman credential file",
				ArgsUsage: "HOST",
				Description: `Stores the credential where docker, podman and oras look for it: $REGISTRY_AUTH_FILE
if set, else ~/.docker/config.json (in plain text unless a credential helper is
configured there), after checking it against the registry (its /v2/ with the credential;
--no-check skips that). The password is read from stdin (--password-stdin) or asked on the
terminal without echo, never taken from an argument; the user name too is asked when -u is
not given. HOST may be written as a URL (https://registry.sealed.local:5000/): the host is
what is stored.

Examples:
   stella registry login registry.sealed.local:5000
   printf '%s' "$PASSWORD" | stella registry login -u robot --password-stdin registry.sealed.local:5000
   stella registry login --plain-http -u robot 127.0.0.1:5000`,
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "user name (asked on a terminal when not given)"},
					&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from stdin (else it is asked on a terminal, without echo)"},
					&cli.BoolFlag{Name: "no-check", Usage: "store the credential without checking it against the registry (one not reachable from here)"},
				}, accessFlags()...),
				Action: action(s.registryLogin),
			},
			{
				Name:      "logout",
				Usage:     "remove a stored registry credential",
				ArgsUsage: "HOST",
				Action:    action(s.registryLogout),
			},
		},
	}
}

// credentialStore is $REGISTRY_AUTH_FILE if set, else the Docker config.
func (s *session) credentialStore() (credentials.Store, string, error) {
	opts := credentials.StoreOptions{AllowPlaintextPut: true}
	if p := s.getenv("REGISTRY_AUTH_FILE"); p != "" {
		st, err := credentials.NewStore(p, opts)
		return st, p, err
	}
	if d := s.getenv("DOCKER_CONFIG"); d != "" {
		p := filepath.Join(d, "config.json")
		st, err := credentials.NewStore(p, opts)
		return st, p, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(home, ".docker", "config.json")
	st, err := credentials.NewStore(p, opts)
	return st, p, err
}

// mirrorOptions merges flags and the config entry of host into mirror options.
func (s *session) mirrorOptions(c *cli.Context, host string) (mirror.Options, error) {
	var opts mirror.Options
	for _, rc := range s.config.Registries {
		if rc.Host == host {
			opts.PlainHTTP, opts.CAFile, opts.ClientCertFile, opts.ClientKeyFile = rc.PlainHTTP, rc.CAFile, rc.CertFile, rc.KeyFile
		}
	}
	if c.Bool("plain-http") {
		opts.PlainHTTP = true
	}
	if v := c.String("ca-file"); v != "" {
		opts.CAFile = v
	}
	if v := c.String("cert-file"); v != "" {
		opts.ClientCertFile = v
	}
	if v := c.String("key-file"); v != "" {
		opts.ClientKeyFile = v
	}
	opts.CheckBlobs = c.Bool("check-blobs")
	if s.debug {
		opts.Trace = func(line string) { s.tracef("http: %s", line) }
	}
	// Credentials: $REGISTRY_AUTH_FILE, then the Docker config.
	var stores []credentials.Store
	if p := s.getenv("REGISTRY_AUTH_FILE"); p != "" {
		if st, err := credentials.NewStore(p, credentials.StoreOptions{}); err == nil {
			stores = append(stores, st)
		}
	}
	if st, _, err := s.credentialStoreDocker(); err == nil {
		stores = append(stores, st)
	}
	opts.Credential = func(ctx context.Context, hostport string) (auth.Credential, error) {
		for _, st := range stores {
			cred, err := st.Get(ctx, credentials.ServerAddressFromHostname(hostport))
			if err == nil && cred != auth.EmptyCredential {
				return cred, nil
			}
		}
		return auth.EmptyCredential, nil
	}
	opts.Allow = s.allowHost
	bar := s.newProgress("")
	opts.Progress = func(e mirror.Event) {
		switch e.Kind {
		case mirror.ArtifactStarted:
			bar.relabel(orDash(e.Ref), 0)
		case mirror.BlobProgress:
			bar.set(e.Done, e.Total)
		case mirror.Retrying:
			s.notef("retrying after a transient failure (attempt %d, waiting %s): %v", e.Attempt, e.Wait, e.Err)
		case mirror.ArtifactDone:
			bar.finish()
		}
	}
	return opts, nil
}

func (s *session) credentialStoreDocker() (credentials.Store, string, error) {
	if d := s.getenv("DOCKER_CONFIG"); d != "" {
		p := filepath.Join(d, "config.json")
		st, err := credentials.NewStore(p, credentials.StoreOptions{})
		return st, p, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(home, ".docker", "config.json")
	st, err := credentials.NewStore(p, credentials.StoreOptions{})
	return st, p, err
}

// allowHost is sealed mode's network policy: only registries named in the
// configuration may be contacted; the refusal happens before any connection.
func (s *session) allowHost(host string) error {
	if !s.sealed {
		return nil
	}
	for _, rc := range s.config.Registries {
		if strings.EqualFold(rc.Host, host) {
			return nil
		}
	}
	return fmt.Errorf("host %s is not a configured sealed registry: %w", host, mirror.ErrNetworkBlocked)
}

type mirrorOut struct {
	Source       string            `json:"source,omitempty"`
	Destination  string            `json:"destination,omitempty"`
	Artifacts    []artifactSummary `json:"artifacts"`
	BlobsCopied  int               `json:"blobsCopied"`
	BytesCopied  int64             `json:"bytesCopied"`
	BlobsSkipped int               `json:"blobsSkipped"`
	BytesSkipped int64             `json:"bytesSkipped"`
	Retries      int               `json:"retries"`
	// ManifestsTrusted: manifests the registry had whose blobs were not
	// checked; CheckedBlobs: --check-blobs checked them all (push).
	ManifestsTrusted int      `json:"manifestsTrusted,omitempty"`
	CheckedBlobs     bool     `json:"checkedBlobs,omitempty"`
	Verified         []string `json:"verified,omitempty"`
}

func addReport(out *mirrorOut, rep mirror.Report) error {
	var first error
	for _, a := range rep.Artifacts {
		sum := artifactSummary{Ref: a.Ref, Kind: a.Kind, Digest: a.Descriptor.Digest, ArtifactType: a.Descriptor.ArtifactType, Subject: a.Subject, Status: string(a.Status)}
		if a.Err != nil {
			sum.Reason = a.Err.Error()
			if first == nil {
				first = a.Err
			}
		}
		out.Artifacts = append(out.Artifacts, sum)
	}
	out.BlobsCopied += rep.BlobsCopied
	out.BytesCopied += rep.BytesCopied
	out.BlobsSkipped += rep.BlobsSkipped
	out.BytesSkipped += rep.BytesSkipped
	out.Retries += rep.Retries
	out.ManifestsTrusted += rep.ManifestsTrusted
	out.CheckedBlobs = out.CheckedBlobs || rep.CheckedBlobs
	return first
}

func renderMirror(w io.Writer, verb string, out mirrorOut) {
	where := display.Line(out.Destination)
	if where == "" {
		where = display.Line(out.Source)
	}
	failed := 0
	for _, a := range out.Artifacts {
		if a.Status == string(mirror.StatusFailed) {
			failed++
		}
	}
	if failed > 0 {
		// Never a success header over a failure.
		fmt.Fprintf(w, "FAILED (%s %s): %d of %d artifact(s) failed; %d blobs (%s) copied, %d blobs (%s) already there, %d retries\n", verb, where,
			failed, len(out.Artifacts), out.BlobsCopied, display.Bytes(out.BytesCopied), out.BlobsSkipped, display.Bytes(out.BytesSkipped), out.Retries)
	} else {
		fmt.Fprintf(w, "%s %s: %d blobs (%s) copied, %d blobs (%s) already there, %d retries\n", verb, where,
			out.BlobsCopied, display.Bytes(out.BytesCopied), out.BlobsSkipped, display.Bytes(out.BytesSkipped), out.Retries)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STATUS\tKIND\tREF\tDIGEST")
	for _, a := range out.Artifacts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", display.Line(string(a.Status)), orDash(string(a.Kind)), orDash(a.Ref), a.Digest)
	}
	tw.Flush()
	for _, a := range out.Artifacts {
		if a.Reason != "" {
			fmt.Fprintf(w, "  %s %s: %s\n", a.Status, a.Digest, display.Line(a.Reason))
		}
	}
	switch {
	case out.CheckedBlobs:
		fmt.Fprintf(w, "  checked every blob under the manifests the registry had (--check-blobs)\n")
	case out.ManifestsTrusted > 0:
		fmt.Fprintf(w, "  the registry had %d manifest(s): trusted with their blobs, not checked (--check-blobs checks them and restores a missing one)\n", out.ManifestsTrusted)
	}
	for _, v := range out.Verified {
		fmt.Fprintf(w, "  verified: %s\n", display.Line(v))
	}
}

func (s *session) packPush(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 2, "ID:VERSION and REGISTRY/REPOSITORY[:TAG]"); err != nil {
		return err
	}
	dst, err := mirror.ParseRef(c.Args().Get(1))
	if err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	arts, hold, err := st.HoldClosure(ctx, []string{c.Args().Get(0)})
	if err != nil {
		return err
	}
	defer hold.Release()
	art := arts[0]
	tag := dst.Tag
	if tag == "" {
		tag = versionOf(art.Ref)
	}
	opts, err := s.mirrorOptions(c, dst.Host)
	if err != nil {
		return err
	}
	rep, err := mirror.Push(ctx, st, []mirror.Artifact{{Descriptor: art.Descriptor, Tag: tag}}, dst, opts)
	out := mirrorOut{Destination: dst.Host + "/" + dst.Repository + ":" + tag, Artifacts: []artifactSummary{}}
	first := addReport(&out, rep)
	if err != nil && len(rep.Artifacts) == 0 {
		return err
	}
	if e := s.emit(out, func(w io.Writer) { renderMirror(w, "pushed to", out) }); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	return first
}

func versionOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i >= 0 {
		return ref[i+1:]
	}
	return "latest"
}

func nameOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i >= 0 {
		return ref[:i]
	}
	return ref
}

// pushRefs pushes refs from the cache to <prefix>/<name>:<version> each.
func (s *session) pushRefs(ctx context.Context, c *cli.Context, st *cache.Store, refs []string, prefix string, out *mirrorOut) error {
	base, err := mirror.ParseRef(prefix)
	if err != nil {
		return err
	}
	if base.Tag != "" || base.Digest != "" {
		return usageError(fmt.Sprintf("--to %s: give a registry/repository prefix without a tag; each pack goes to <prefix>/<name>:<version>", prefix))
	}
	opts, err := s.mirrorOptions(c, base.Host)
	if err != nil {
		return err
	}
	var first error
	for _, ref := range refs {
		arts, hold, err := st.HoldClosure(ctx, []string{ref})
		if err != nil {
			return err
		}
		art := arts[0]
		dst := base
		dst.Repository = strings.TrimSuffix(base.Repository, "/") + "/" + nameOf(art.Ref)
		rep, err := mirror.Push(ctx, st, []mirror.Artifact{{Descriptor: art.Descriptor, Tag: versionOf(art.Ref)}}, dst, opts)
		hold.Release()
		if e := addReport(out, rep); e != nil && first == nil {
			first = e
		}
		if err != nil {
			return err
		}
	}
	return first
}

func (s *session) mirrorPush(ctx context.Context, c *cli.Context) error {
	if c.NArg() == 0 || c.String("to") == "" {
		return usageError("pack mirror push: expected ID:VERSION... and --to REGISTRY/PREFIX")
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	out := mirrorOut{Destination: c.String("to"), Artifacts: []artifactSummary{}}
	perr := s.pushRefs(ctx, c, st, c.Args().Slice(), c.String("to"), &out)
	if err := s.emit(out, func(w io.Writer) { renderMirror(w, "pushed to", out) }); err != nil {
		return err
	}
	return perr
}

// isBundleSource tells a bundle file (or split set) from a registry reference.
func isBundleSource(src string) bool {
	for _, p := range []string{src, src + bundle.PartsSuffix} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return strings.HasPrefix(src, "/") || strings.HasPrefix(src, "./") || strings.HasSuffix(src, ".tar") || strings.HasSuffix(src, ".001")
}

func (s *session) mirrorPull(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one SOURCE (registry reference or bundle file)"); err != nil {
		return err
	}
	src := c.Args().First()
	if isBundleSource(src) {
		return s.mirrorPullBundle(ctx, c, src)
	}
	ref, err := mirror.ParseRef(src)
	if err != nil {
		return err
	}
	pol, err := s.admissionPolicy(c)
	if err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	opts, err := s.mirrorOptions(c, ref.Host)
	if err != nil {
		return err
	}
	// The registry's name for the pack is its repository's last element and
	// the tag: it must be the name the signed manifest carries (ADR 0007).
	hook, log := pol.Hook(admission.Claim{Name: path.Base(ref.Repository), Version: ref.Tag})
	how := []string{"sha256 and size of every blob while it streamed from the registry"}
	if d := pol.Describe(); d != "" {
		how = append(how, d)
	}
	rep, err := mirror.Pull(ctx, ref, st, cache.ImportRecord{From: "registry " + ref.String(), Verified: how}, mirror.PullOptions{Options: opts, Verify: hook, BindSignatures: true})
	out := mirrorOut{Source: ref.String(), Artifacts: []artifactSummary{}}
	first := addReport(&out, rep)
	out.Verified = append(slices.Clone(how), log.Verified()...)
	// Say what the copy did, as a bundle import does (admission.ImportBundle).
	switch {
	case slices.ContainsFunc(rep.Artifacts, func(a mirror.ArtifactReport) bool { return a.Status == mirror.StatusFailed }):
		out.Verified[0] = "sha256 and size of every blob that entered the cache, while it streamed from the registry; an artifact failed (above), and nothing of it entered"
	case rep.BlobsCopied == 0:
		out.Verified[0] = "no blob read from the registry: every blob was already in the cache"
	}
	if err != nil && len(rep.Artifacts) == 0 {
		return err
	}
	if err == nil && first == nil && c.String("to") != "" {
		var refs []string
		for _, a := range rep.Artifacts {
			if a.Ref != "" && a.Kind == artifact.KindPack {
				refs = append(refs, a.Ref)
			}
		}
		out.Destination = c.String("to")
		err = s.pushRefs(ctx, c, st, refs, c.String("to"), &out)
	}
	if e := s.emit(out, func(w io.Writer) { renderMirror(w, "mirrored", out) }); e != nil {
		return e
	}
	if err != nil {
		return err
	}
	return first
}

// mirrorPullBundle imports a bundle file into the cache exactly like
// `pack import`, then pushes its packs with --to.
func (s *session) mirrorPullBundle(ctx context.Context, c *cli.Context, file string) error {
	pol, err := s.admissionPolicy(c)
	if err != nil {
		return err
	}
	st, err := s.openCache(ctx)
	if err != nil {
		return err
	}
	imp, packs, failure, err := s.importBundle(ctx, st, file, pol)
	if err != nil {
		return err
	}
	out := mirrorOut{Source: imp.From, Artifacts: imp.Artifacts, BlobsCopied: imp.BlobsWritten, BytesCopied: imp.BytesWritten,
		BlobsSkipped: imp.BlobsSkipped, BytesSkipped: imp.BytesSkipped, Verified: imp.Verified}
	var perr error
	if to := c.String("to"); to != "" && len(packs) > 0 {
		out.Destination = to
		perr = s.pushRefs(ctx, c, st, packs, to, &out)
	}
	if err := s.emit(out, func(w io.Writer) { renderMirror(w, "mirrored", out) }); err != nil {
		return err
	}
	return errors.Join(failure, perr)
}

func (s *session) registryLogin(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one registry HOST"); err != nil {
		return err
	}
	host, err := mirror.RegistryHost(c.Args().First())
	if err != nil {
		return err
	}
	if err := s.allowHost(host); err != nil {
		return err
	}
	user, password, err := s.loginCredential(c, host)
	if err != nil {
		return err
	}
	opts, err := s.mirrorOptions(c, host)
	if err != nil {
		return err
	}
	cred := auth.Credential{Username: user, Password: password}
	if !c.Bool("no-check") {
		// Checked before it is stored: a mistyped password fails here,
		// not at the first push hours later.
		if err := mirror.CheckLogin(ctx, host, cred, opts); err != nil {
			return err
		}
	}
	store, path, err := s.credentialStore()
	if err != nil {
		return err
	}
	if err := store.Put(ctx, credentials.ServerAddressFromHostname(host), cred); err != nil {
		return fmt.Errorf("store credential for %s in %s: %w", host, path, err)
	}
	res := struct {
		Host string `json:"host"`
		File string `json:"file"`
	}{host, path}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "stored credential for %s in %s\n", display.Line(host), display.Line(path))
	})
}

// loginCredential is the user name (-u, else asked on the terminal) and
// the password (stdin with --password-stdin, else asked on the terminal
// without echo); never from an argument.
func (s *session) loginCredential(c *cli.Context, host string) (string, string, error) {
	user := c.String("username")
	if c.Bool("password-stdin") {
		if user == "" {
			return "", "", usageError("registry login --password-stdin: -u USER is required")
		}
		pw, err := io.ReadAll(io.LimitReader(s.stdin, 64<<10))
		if err != nil {
			return "", "", err
		}
		password := strings.TrimRight(string(pw), "\r\n")
		if password == "" {
			return "", "", usageError("registry login: empty password on stdin")
		}
		return user, password, nil
	}
	tty, err := openTTY()
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return "", "", usageError("registry login: no terminal to ask on: give -u USER and the password on stdin with --password-stdin (never as an argument)")
	}
	defer tty.Close()
	if user == "" {
		fmt.Fprintf(tty, "Username for %s: ", display.Line(host))
		// A byte at a time: nothing of the password typed ahead is read
		// into a buffer here.
		var line []byte
		b := make([]byte, 1)
		for len(line) < 1024 {
			n, err := tty.Read(b)
			if n == 1 && b[0] != '\n' {
				line = append(line, b[0])
			}
			if err != nil || (n == 1 && b[0] == '\n') {
				break
			}
		}
		if user = strings.TrimSpace(string(line)); user == "" {
			return "", "", usageError("registry login: empty user name")
		}
	}
	pw, err := readHidden(tty, fmt.Sprintf("Password for %s@%s: ", user, host))
	if err != nil {
		return "", "", err
	}
	defer clear(pw)
	if len(pw) == 0 {
		return "", "", usageError("registry login: empty password")
	}
	return user, string(pw), nil
}

func (s *session) registryLogout(ctx context.Context, c *cli.Context) error {
	if err := argsExactly(c, 1, "one registry HOST"); err != nil {
		return err
	}
	store, path, err := s.credentialStore()
	if err != nil {
		return err
	}
	host, err := mirror.RegistryHost(c.Args().First())
	if err != nil {
		return err
	}
	if err := store.Delete(ctx, credentials.ServerAddressFromHostname(host)); err != nil {
		return err
	}
	res := struct {
		Host string `json:"host"`
		File string `json:"file"`
	}{host, path}
	return s.emit(res, func(w io.Writer) {
		fmt.Fprintf(w, "removed credential for %s from %s\n", display.Line(host), display.Line(path))
	})
}
