package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeTLS: with --cert-file and --key-file, stella serve answers
// HTTPS with that certificate (here on loopback), and no plain HTTP.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stella serve test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "serve.crt"), filepath.Join(dir, "serve.key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))

	addr := freePort(t)
	srv := startStella(t, home, "serve", "--listen", addr, "--cert-file", certFile, "--key-file", keyFile)
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err = client.Get("https://" + addr + "/healthz")
		if err == nil || time.Now().After(deadline) || srv.exited() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("https /healthz: %v (serve: %s)", err, srv.errb.String())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("https /healthz: %s", resp.Status)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on the TLS port")
		}
	}
	if srv.exited() {
		t.Fatalf("serve exited: %v", srv.err)
	}
	_ = srv.Process.Signal(os.Interrupt)
	select {
	case <-srv.done:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGINT")
	}
	if srv.err != nil || !strings.Contains(srv.out.String(), "listening on https://"+addr) {
		t.Fatalf("serve: exit %v, stdout %q", srv.err, srv.out.String())
	}
}

// TestServeFollowLiveRun: a client follows, over SSE from the real
// `stella serve`, the log of a live `stella pack run` from its first line
// to its end state, dropping the connection twice and reconnecting with
// Last-Event-ID: every line arrives once, in order.
func TestServeFollowLiveRun(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	const lines = 200
	writeFile(t, filepath.Join(dir, "talk", "pack.yaml"), promPack("talk", `    - id: talk
      run:
        command: ["sh", "-c", "i=1; while [ $i -le 200 ]; do echo line $i; [ $((i % 20)) -eq 0 ] && sleep 0.1; i=$((i+1)); done"]
`))
	addr := freePort(t)
	startStella(t, home, "serve", "--listen", addr)
	base := "http://" + addr
	waitHTTP(t, base+"/healthz", 20*time.Second)
	runner := startStella(t, home, "pack", "run", "--insecure-skip-isolation", "--pack", filepath.Join(dir, "talk"))

	var id string
	for deadline := time.Now().Add(30 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/api/runs")
		if err != nil {
			t.Fatal(err)
		}
		var list []struct {
			ID string `json:"id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if len(list) == 1 {
			id = list[0].ID
		}
	}
	if id == "" {
		t.Fatal("the run never appeared in /api/runs")
	}
	var got []string
	last, end, conns := "", "", 0
	for ; end == "" && conns < 20; conns++ {
		req, _ := http.NewRequest("GET", base+"/task-runner/runs/"+id+"/logs", nil)
		req.Header.Set("Accept", "text/event-stream")
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		var typ, eid string
		n := 0
	read:
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "id: "):
				eid = l[4:]
			case strings.HasPrefix(l, "event: "):
				typ = l[7:]
			case strings.HasPrefix(l, "data: "):
				last = eid
				switch typ {
				case "log":
					var rec struct {
						Msg string `json:"msg"`
					}
					if err := json.Unmarshal([]byte(l[6:]), &rec); err != nil {
						t.Fatal(err)
					}
					got = append(got, strings.Split(rec.Msg, "\n")...)
				case "end":
					end = l[6:]
				}
				if n++; conns < 2 && n == 3 {
					break read
				}
			}
		}
		resp.Body.Close()
	}
	<-runner.done
	if len(got) != lines {
		t.Fatalf("%d lines, want %d: %q", len(got), lines, got)
	}
	for i, l := range got {
		if l != "line "+strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q", i+1, l)
		}
	}
	if !strings.Contains(end, `"state":"succeeded"`) || conns < 3 {
		t.Fatalf("end %q after %d connections", end, conns)
	}
}
