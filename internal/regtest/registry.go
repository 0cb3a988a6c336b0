package regtest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

const (
	// DebianBinary is where Debian's docker-registry package installs distribution 2.8.
	DebianBinary = "/usr/bin/docker-registry"

	readyTimeout  = 20 * time.Second
	startAttempts = 3
	tokenHeader   = "X-Stella-Regtest"
)

// Options configure a registry started by [Start].
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost signed by a CA
	// generated for this registry ([Registry.CAFile], [Registry.CAPool]).
	TLS bool
	// Username and Password, when Username is set, turn on htpasswd basic auth.
	Username, Password string
	// Binary is the registry executable; empty means [Binary]. Any registry speaking
	// distribution's config format works, e.g. [Debian].
	Binary string
}

// Registry is a running registry. Its fields are read-only.
type Registry struct {
	Host       string         // "127.0.0.1:port"
	URL        string         // "http://127.0.0.1:port" or "https://127.0.0.1:port"
	PlainHTTP  bool           // true unless served over TLS
	StorageDir string         // root of filesystem storage; "" for in-memory registries
	CAFile     string         // PEM file of the CA that signed the server certificate; "" without TLS
	CAPool     *x509.CertPool // pool holding only that CA; nil without TLS
	Username   string         // "" without auth
	Password   string
	LogFile    string // the registry process's output; "" for in-process registries

	pid int // child process id; 0 for in-process registries
}

// Start runs a registry process on a free loopback port with its own config in
// t.TempDir() and waits until GET /v2/ answers. t.Cleanup kills the process and waits
// for it.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	dir := t.TempDir()
	r := &Registry{
		PlainHTTP:  !opts.TLS,
		StorageDir: filepath.Join(dir, "storage"),
		Username:   opts.Username,
		Password:   opts.Password,
		LogFile:    filepath.Join(dir, "registry.log"),
	}
	if err := os.Mkdir(r.StorageDir, 0o755); err != nil {
		t.Fatalf("regtest: %v", err)
	}
	cfg := registryConfig{storageDir: r.StorageDir, token: randomHex(16)}
	if opts.TLS {
		files, err := writeTLSFiles(dir)
		if err != nil {
			t.Fatalf("regtest: tls: %v", err)
		}
		r.CAFile, r.CAPool = files.caFile, files.pool
		cfg.certFile, cfg.keyFile = files.certFile, files.keyFile
	}
	if opts.Username != "" {
		cfg.htpasswd = filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(cfg.htpasswd, opts.Username, opts.Password); err != nil {
			t.Fatalf("regtest: %v", err)
		}
	}
	configFile := filepath.Join(dir, "config.yml")

	for attempt := 1; ; attempt++ {
		addr, err := freePort()
		if err != nil {
			t.Fatalf("regtest: %v", err)
		}
		cfg.addr = addr
		r.Host = addr
		r.URL = "http://" + addr
		if opts.TLS {
			r.URL = "https://" + addr
		}
		if err := cfg.write(configFile); err != nil {
			t.Fatalf("regtest: %v", err)
		}
		if r.launch(t, attempt, bin, []string{"serve", configFile}, cfg.token, opts.Username != "") {
			return r
		}
	}
}

// launch starts the registry bin with args, waits until it answers at r.Host
// (with token and auth as waitReady takes them) and reports whether it did;
// t.Cleanup then stops it. It reports false when the process exited before
// answering on an attempt that may be retried on another port (it most likely
// lost its port to another process); any other failure fails t with the
// registry's log.
func (r *Registry) launch(t testing.TB, attempt int, bin string, args []string, token string, authOn bool) bool {
	t.Helper()
	proc, err := startProcess(bin, args, r.LogFile)
	if err != nil {
		t.Fatalf("regtest: start %s: %v", bin, err)
	}
	err = r.waitReady(proc, token, authOn)
	if err == nil {
		r.pid = proc.cmd.Process.Pid
		t.Cleanup(proc.stop)
		return true
	}
	proc.stop()
	if errors.Is(err, errExited) && attempt < startAttempts {
		return false
	}
	log, _ := os.ReadFile(r.LogFile)
	t.Fatalf("regtest: %s on %s: %v\nregistry log:\n%s", bin, r.Host, err, log)
	return false
}

// Debian returns the path of Debian's docker-registry (distribution 2.8). When it is not
// installed the test is skipped, or fails when the environment variable CI is "true",
// since CI installs it.
func Debian(t testing.TB) string {
	t.Helper()
	if err := checkExecutable(DebianBinary); err != nil {
		msg := fmt.Sprintf("regtest: Debian's docker-registry is not installed (%v); install it with: apt-get install -y docker-registry", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return DebianBinary
}

// Client returns an HTTP client trusting the registry's CA. It sends no credentials.
func (r *Registry) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.CAPool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}
}

// Repository returns an oras-go repository client for name on this registry, trusting
// its CA and sending its credentials, if any.
func (r *Registry) Repository(t testing.TB, name string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(r.Host + "/" + name)
	if err != nil {
		t.Fatalf("regtest: repository %q: %v", name, err)
	}
	repo.PlainHTTP = r.PlainHTTP
	client := &auth.Client{Client: r.Client(), Cache: auth.NewCache()}
	if r.Username != "" {
		client.Credential = auth.StaticCredential(r.Host, auth.Credential{Username: r.Username, Password: r.Password})
	}
	repo.Client = client
	return repo
}

// BlobPath returns where filesystem storage keeps the content of blob d (whether or not
// it is present), so tests can corrupt or remove it. It is "" for in-memory registries.
func (r *Registry) BlobPath(d digest.Digest) string {
	if r.StorageDir == "" {
		return ""
	}
	enc := d.Encoded()
	if len(enc) < 2 {
		return ""
	}
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs",
		d.Algorithm().String(), enc[:2], enc, "data")
}

var errExited = errors.New("registry exited before it was ready")

// waitReady polls GET /v2/ until the registry answers with this instance's token header
// (200, or 401 when auth is on), the process exits, or readyTimeout passes. With token ""
// (olareg sets no header of ours) a registry's 200 is enough: one that lost the port to
// another process exits, and is started again on another.
func (r *Registry) waitReady(p *process, token string, authOn bool) error {
	client := r.Client()
	client.Timeout = time.Second
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v", errExited, p.err)
		default:
		}
		resp, err := client.Get(r.URL + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			ok := resp.StatusCode == http.StatusOK || (authOn && resp.StatusCode == http.StatusUnauthorized)
			mine := resp.Header.Get(tokenHeader) == token
			if token == "" {
				mine = resp.Header.Get("Docker-Distribution-API-Version") == "registry/2.0"
			}
			if ok && mine {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v", readyTimeout, last)
}

// process is a running registry child process.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited and been waited for
	err  error         // Wait's result, valid once done is closed
}

func startProcess(bin string, args []string, logFile string) (*process, error) {
	log, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, err
	}
	p := &process{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	return p, nil
}

// stop kills the process and waits for it to exit.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// childEnv is the environment without variables that would reconfigure the registry
// (REGISTRY_*) or make distribution v3 export traces (OTEL_*), plus tracing turned off.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REGISTRY_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_SDK_DISABLED=true")
}

// registryConfig is the registry configuration written for one instance.
type registryConfig struct {
	addr       string
	storageDir string
	token      string // value of tokenHeader on every response, to recognize this instance
	certFile   string
	keyFile    string
	htpasswd   string
}

func (c registryConfig) write(path string) error {
	httpCfg := map[string]any{
		"addr":    c.addr,
		"secret":  randomHex(16),
		"headers": map[string][]string{tokenHeader: {c.token}},
	}
	if c.certFile != "" {
		httpCfg["tls"] = map[string]any{"certificate": c.certFile, "key": c.keyFile}
	}
	doc := map[string]any{
		"version": "0.1",
		"log": map[string]any{
			"level":     "error",
			"formatter": "text",
			"accesslog": map[string]any{"disabled": true},
		},
		"storage": map[string]any{
			"filesystem":  map[string]any{"rootdirectory": c.storageDir},
			"delete":      map[string]any{"enabled": true},
			"redirect":    map[string]any{"disable": true},
			"maintenance": map[string]any{"uploadpurging": map[string]any{"enabled": false}},
		},
		"http": httpCfg,
	}
	if c.htpasswd != "" {
		doc["auth"] = map[string]any{"htpasswd": map[string]any{"realm": "stella-regtest", "path": c.htpasswd}}
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	return nil
}

func writeHtpasswd(path, user, password string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	if err := os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	return nil
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	return addr, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}
