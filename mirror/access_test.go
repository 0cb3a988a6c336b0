package mirror_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/olareg/olareg"
	"github.com/olareg/olareg/config"
	"oras.land/oras-go/v2/registry/remote/auth"

	"stellaops.io/stella/cache"
	"stellaops.io/stella/cache/cachetest"
	"stellaops.io/stella/internal/regtest"
	"stellaops.io/stella/mirror"
)

// acceptCounter is a loopback listener that counts the connections made to it.
func acceptCounter(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String(), &n
}

var errSealed = errors.New("sealed: host not in the allowlist")

// Sealed mode: a host Allow refuses is never connected to, whether it is the registry
// named or a host the registry redirects to.
func TestAllowRefusesBeforeConnecting(t *testing.T) {
	t.Parallel()
	host, accepts := acceptCounter(t)
	opts := mirror.Options{PlainHTTP: true, Allow: func(h string) error {
		if h == host {
			return errSealed
		}
		return nil
	}}
	ctx := testContext(t)
	f := newFixture(t)

	_, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, host+"/stella/sealed:1.0.0"), opts)
	if !errors.Is(err, mirror.ErrNetworkBlocked) || !errors.Is(err, errSealed) {
		t.Errorf("push: %v; want ErrNetworkBlocked wrapping the policy's error", err)
	}
	c := cachetest.Open(t)
	_, err = mirror.Pull(ctx, mustRef(t, host+"/stella/sealed:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
	if !errors.Is(err, mirror.ErrNetworkBlocked) {
		t.Errorf("pull: %v; want ErrNetworkBlocked", err)
	}

	// A registry the policy allows redirects a blob to a host it does not.
	r := regtest.Start(t, regtest.Options{})
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/sealed:1.0.0"), optionsFor(r)); err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, r, func(w http.ResponseWriter, req *http.Request) bool {
		if !isBlobGet(req, f.layers[0].Digest) {
			return false
		}
		http.Redirect(w, req, "http://"+host+req.URL.Path, http.StatusTemporaryRedirect)
		return true
	})
	_, err = mirror.Pull(ctx, mustRef(t, proxy+"/stella/sealed:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
	if !errors.Is(err, mirror.ErrNetworkBlocked) {
		t.Errorf("pull redirected to a refused host: %v; want ErrNetworkBlocked", err)
	}
	assertNothingStored(t, c)
	if n := accepts.Load(); n != 0 {
		t.Errorf("the refused host accepted %d connections; want 0", n)
	}
}

// No credential appears in an error or an event, whatever fails.
func TestCredentialsNeverLeak(t *testing.T) {
	t.Parallel()
	const password = "pw-Zq81-do-not-print"
	r := regtest.Start(t, regtest.Options{TLS: true, Username: "alice", Password: password})
	ctx := testContext(t)
	f := newFixture(t)
	var ev events
	check := func(what string, err error) {
		t.Helper()
		for _, s := range errorStrings(err) {
			noSecret(t, what+" error", s, password)
			noSecret(t, what+" error", s, "wrong-"+password)
		}
		for _, e := range ev.all {
			for _, s := range errorStrings(e.Err) {
				noSecret(t, what+" event", s, password)
			}
			noSecret(t, what+" event", fmt.Sprintf("%+v", e), password)
		}
	}

	wrong := optionsFor(r)
	wrong.Credential = auth.StaticCredential(r.Host, auth.Credential{Username: "alice", Password: "wrong-" + password})
	wrong.Progress = ev.add
	_, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/secret:1.0.0"), wrong)
	if !errors.Is(err, mirror.ErrUnauthorized) {
		t.Errorf("push with a wrong password: %v; want ErrUnauthorized", err)
	}
	check("push", err)

	right := optionsFor(r)
	right.Progress = ev.add
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/secret:1.0.0"), right); err != nil {
		t.Fatalf("push: %v", err)
	}
	c := cachetest.Open(t)
	_, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/secret:1.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: wrong})
	if !errors.Is(err, mirror.ErrUnauthorized) {
		t.Errorf("pull with a wrong password: %v; want ErrUnauthorized", err)
	}
	check("pull", err)
	_, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/secret:2.0.0"), c, cache.ImportRecord{}, mirror.PullOptions{Options: right})
	if !errors.Is(err, mirror.ErrNotFound) {
		t.Errorf("pull of a missing tag: %v; want ErrNotFound", err)
	}
	check("pull of a missing tag", err)
	assertNothingStored(t, c)

	for _, s := range []string{
		"alice:" + password + "@" + r.Host + "/stella/secret:1.0.0",
		"https://alice:" + password + "@" + r.Host + "/stella/secret:1.0.0",
	} {
		_, err := mirror.ParseRef(s)
		if !errors.Is(err, mirror.ErrInvalidReference) {
			t.Errorf("ParseRef with credentials: %v; want ErrInvalidReference", err)
		}
		check("ParseRef", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{TLS: true})
	ctx := testContext(t)
	f := newFixture(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts mirror.Options
		want error
	}{
		{"CA not given", mirror.Options{}, mirror.ErrUntrustedCertificate},
		{"CA file without a certificate", mirror.Options{CAFile: garbage}, mirror.ErrTLSConfig},
		{"CA file missing", mirror.Options{CAFile: filepath.Join(dir, "absent.pem")}, mirror.ErrTLSConfig},
		{"client certificate without key", mirror.Options{CAFile: r.CAFile, ClientCertFile: garbage}, mirror.ErrTLSConfig},
		{"client certificate unreadable", mirror.Options{CAFile: r.CAFile, ClientCertFile: garbage, ClientKeyFile: garbage}, mirror.ErrTLSConfig},
	} {
		_, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/tls:1.0.0"), tc.opts)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.want)
		}
	}
}

// A registry that requires a client certificate gets the one configured.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t)
	serverCert := ca.issue(t, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.writePair(t, dir, "client", x509.ExtKeyUsageClientAuth)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	enabled := true
	handler := olareg.New(config.Config{Storage: config.ConfigStorage{StoreType: config.StoreMem},
		API: config.ConfigAPI{DeleteEnabled: &enabled}})
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: ca.pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); _ = handler.Close() })
	host := strings.TrimPrefix(srv.URL, "https://")

	ctx := testContext(t)
	f := newFixture(t)
	dst := mustRef(t, host+"/stella/mtls:1.0.0")
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, mirror.Options{CAFile: caFile}); err == nil {
		t.Error("push without a client certificate succeeded")
	}
	opts := mirror.Options{CAFile: caFile, ClientCertFile: clientCert, ClientKeyFile: clientKey}
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, dst, opts); err != nil {
		t.Fatalf("push with a client certificate: %v", err)
	}
	c := cachetest.Open(t)
	rep, err := mirror.Pull(ctx, dst, c, cache.ImportRecord{}, mirror.PullOptions{Options: opts})
	if err != nil {
		t.Fatalf("pull with a client certificate: %v", err)
	}
	checkPulled(t, c, rep, f)
}

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mirror test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

func (ca *testCA) issueDER(t *testing.T, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (ca *testCA) issue(t *testing.T, usage x509.ExtKeyUsage) tls.Certificate {
	der, key := ca.issueDER(t, usage)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) writePair(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	der, key := ca.issueDER(t, usage)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Options.Proxy carries requests through a proxy, whose host Allow is asked about too.
func TestProxy(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	f := newFixture(t)
	var proxied atomic.Int64
	fwd := &httputil.ReverseProxy{Director: func(req *http.Request) { proxied.Add(1) }}
	srv := httptest.NewServer(fwd)
	t.Cleanup(srv.Close)
	proxyURL, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts := optionsFor(r)
	opts.Proxy = http.ProxyURL(proxyURL)
	ctx := testContext(t)
	if _, err := mirror.Push(ctx, f.store, []mirror.Artifact{{Descriptor: f.pack}}, mustRef(t, r.Host+"/stella/proxied:1.0.0"), opts); err != nil {
		t.Fatalf("push through a proxy: %v", err)
	}
	if proxied.Load() == 0 {
		t.Error("no request went through the proxy")
	}
	checkRegistry(t, r, "stella/proxied", "1.0.0", f, false)

	host, accepts := acceptCounter(t)
	opts.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: host})
	opts.Allow = func(h string) error {
		if h == host {
			return errSealed
		}
		return nil
	}
	_, err = mirror.Pull(ctx, mustRef(t, r.Host+"/stella/proxied:1.0.0"), cachetest.Open(t), cache.ImportRecord{}, mirror.PullOptions{Options: opts})
	if !errors.Is(err, mirror.ErrNetworkBlocked) {
		t.Errorf("pull through a refused proxy: %v; want ErrNetworkBlocked", err)
	}
	if n := accepts.Load(); n != 0 {
		t.Errorf("the refused proxy accepted %d connections; want 0", n)
	}
}
