package regtest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"stellaops.io/stella/internal/regtest"
)

const (
	artifactType  = "application/vnd.stella.regtest.v1"
	layerType     = "application/vnd.stella.regtest.layer.v1"
	signatureType = "application/vnd.stella.regtest.signature.v1"
	fixedCreated  = "2024-01-01T00:00:00Z"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pushSample pushes a one-layer artifact tagged "v1" and returns its manifest descriptor
// and layer content.
func pushSample(t *testing.T, ctx context.Context, repo *remote.Repository, payload string) (ocispec.Descriptor, []byte) {
	t.Helper()
	layer := []byte(payload)
	layerDesc := content.NewDescriptorFromBytes(layerType, layer)
	if err := repo.Push(ctx, layerDesc, bytes.NewReader(layer)); err != nil {
		t.Fatalf("push layer: %v", err)
	}
	manifest, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{
		Layers:              []ocispec.Descriptor{layerDesc},
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: fixedCreated},
	})
	if err != nil {
		t.Fatalf("pack manifest: %v", err)
	}
	if err := repo.Tag(ctx, manifest, "v1"); err != nil {
		t.Fatalf("tag: %v", err)
	}
	return manifest, layer
}

// checkRoundTrip pushes an artifact through one client and reads it back through a
// fresh one: the tag resolves to the pushed digest and the layer comes back intact.
func checkRoundTrip(t *testing.T, r *regtest.Registry, name string) (ocispec.Descriptor, []byte) {
	t.Helper()
	ctx := testContext(t)
	manifest, layer := pushSample(t, ctx, r.Repository(t, name), "hello from "+name)

	repo := r.Repository(t, name)
	got, err := repo.Resolve(ctx, "v1")
	if err != nil {
		t.Fatalf("resolve v1: %v", err)
	}
	if got.Digest != manifest.Digest {
		t.Fatalf("v1 resolves to %s, pushed %s", got.Digest, manifest.Digest)
	}
	data, err := content.FetchAll(ctx, repo, manifest)
	if err != nil {
		t.Fatalf("fetch manifest: %v", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decode manifest: %v", err)
	}
	if m.ArtifactType != artifactType || len(m.Layers) != 1 {
		t.Fatalf("manifest artifactType %q with %d layers, want %q with 1", m.ArtifactType, len(m.Layers), artifactType)
	}
	blob, err := content.FetchAll(ctx, repo, m.Layers[0])
	if err != nil {
		t.Fatalf("fetch layer: %v", err)
	}
	if !bytes.Equal(blob, layer) {
		t.Fatalf("layer = %q, want %q", blob, layer)
	}
	return manifest, layer
}

func getV2(t *testing.T, client *http.Client, r *regtest.Registry, user, password string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, r.URL+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func TestStartPlain(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	if !r.PlainHTTP || r.URL != "http://"+r.Host || r.CAFile != "" || r.CAPool != nil {
		t.Fatalf("plain registry: %+v", r)
	}
	if code, err := getV2(t, r.Client(), r, "", ""); err != nil || code != http.StatusOK {
		t.Fatalf("GET /v2/ = %d, %v; want 200", code, err)
	}
	_, layer := checkRoundTrip(t, r, "stella/plain")

	// The blob sits in filesystem storage where tamper tests can reach it.
	onDisk, err := os.ReadFile(r.BlobPath(digest.FromBytes(layer)))
	if err != nil {
		t.Fatalf("blob in storage: %v", err)
	}
	if !bytes.Equal(onDisk, layer) {
		t.Fatalf("stored blob = %q, want %q", onDisk, layer)
	}
}

func TestStartTLSAuth(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{TLS: true, Username: "alice", Password: "s3cret"})
	if r.PlainHTTP || r.URL != "https://"+r.Host || r.CAPool == nil {
		t.Fatalf("tls registry: %+v", r)
	}

	// The CA file holds the CA that signed the server certificate.
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", r.CAFile)
	}
	fromFile := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	for _, tc := range []struct {
		name           string
		user, password string
		want           int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong password", "alice", "nope", http.StatusUnauthorized},
		{"credentials", "alice", "s3cret", http.StatusOK},
	} {
		code, err := getV2(t, fromFile, r, tc.user, tc.password)
		if err != nil || code != tc.want {
			t.Errorf("%s: GET /v2/ = %d, %v; want %d", tc.name, code, err, tc.want)
		}
	}

	// A client that does not trust the CA fails certificate verification.
	_, err = getV2(t, &http.Client{Transport: &http.Transport{}}, r, "alice", "s3cret")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("GET /v2/ without the CA: %v; want x509.UnknownAuthorityError", err)
	}

	checkRoundTrip(t, r, "stella/tls")

	// Wrong credentials are refused on push.
	repo := r.Repository(t, "stella/tls")
	repo.Client.(*auth.Client).Credential = auth.StaticCredential(r.Host, auth.Credential{Username: "alice", Password: "nope"})
	blob := []byte("refused")
	err = repo.Push(testContext(t), content.NewDescriptorFromBytes(layerType, blob), bytes.NewReader(blob))
	var resp *errcode.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("push with wrong password: %v; want HTTP 401", err)
	}
}

func TestStartAuthPlainHTTP(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{Username: "bob", Password: "pw"})
	if code, err := getV2(t, r.Client(), r, "", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v2/ = %d, %v; want 401", code, err)
	}
	checkRoundTrip(t, r, "stella/plain-auth")
}

func TestDebian(t *testing.T) {
	t.Parallel()
	bin := regtest.Debian(t)
	for _, tc := range []struct {
		name     string
		opts     regtest.Options
		wantAnon int
	}{
		{"plain", regtest.Options{Binary: bin}, http.StatusOK},
		{"auth over plain HTTP", regtest.Options{Binary: bin, Username: "carol", Password: "pw"}, http.StatusUnauthorized},
		{"TLS and auth", regtest.Options{Binary: bin, TLS: true, Username: "carol", Password: "pw"}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := regtest.Start(t, tc.opts)
			if code, err := getV2(t, r.Client(), r, "", ""); err != nil || code != tc.wantAnon {
				t.Fatalf("anonymous GET /v2/ = %d, %v; want %d", code, err, tc.wantAnon)
			}
			_, layer := checkRoundTrip(t, r, "stella/debian")
			if _, err := os.Stat(r.BlobPath(digest.FromBytes(layer))); err != nil {
				t.Fatalf("blob in storage: %v", err)
			}
		})
	}
}

func TestStartReferrers(t *testing.T) {
	t.Parallel()
	r := regtest.StartReferrers(t)
	ctx := testContext(t)
	subject, _ := checkRoundTrip(t, r, "stella/referrers")

	repo := r.Repository(t, "stella/referrers")
	sig, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, signatureType, oras.PackManifestOptions{
		Subject:             &subject,
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: fixedCreated},
	})
	if err != nil {
		t.Fatalf("push referrer: %v", err)
	}

	// The native API answers with an OCI index naming the referrer.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/stella/referrers/referrers/"+subject.Digest.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET referrers: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageIndex {
		t.Errorf("referrers Content-Type = %q, want %q", ct, ocispec.MediaTypeImageIndex)
	}
	var index ocispec.Index
	if err := json.NewDecoder(resp.Body).Decode(&index); err != nil {
		t.Fatalf("decode referrers index: %v", err)
	}
	if index.MediaType != ocispec.MediaTypeImageIndex || len(index.Manifests) != 1 ||
		index.Manifests[0].Digest != sig.Digest || index.Manifests[0].ArtifactType != signatureType {
		t.Fatalf("referrers index = %+v; want one manifest %s of type %s", index, sig.Digest, signatureType)
	}

	// oras-go lists it too, filtered by artifact type.
	listed, err := registry.Referrers(ctx, r.Repository(t, "stella/referrers"), subject, signatureType)
	if err != nil {
		t.Fatalf("list referrers: %v", err)
	}
	if len(listed) != 1 || listed[0].Digest != sig.Digest {
		t.Fatalf("referrers = %+v, want %s", listed, sig.Digest)
	}

	// Native means no tag fallback was written.
	fallback := "sha256-" + subject.Digest.Encoded()
	if _, err := repo.Resolve(ctx, fallback); !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("resolve %s: %v; want not found (native referrers API)", fallback, err)
	}
}

func TestStartDistributionUsesTagFallback(t *testing.T) {
	t.Parallel()
	r := regtest.Start(t, regtest.Options{})
	ctx := testContext(t)
	subject, _ := checkRoundTrip(t, r, "stella/fallback")
	repo := r.Repository(t, "stella/fallback")
	sig, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, signatureType, oras.PackManifestOptions{
		Subject:             &subject,
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: fixedCreated},
	})
	if err != nil {
		t.Fatalf("push referrer: %v", err)
	}
	if _, err := repo.Resolve(ctx, "sha256-"+subject.Digest.Encoded()); err != nil {
		t.Fatalf("tag fallback index: %v", err)
	}
	listed, err := registry.Referrers(ctx, r.Repository(t, "stella/fallback"), subject, "")
	if err != nil {
		t.Fatalf("list referrers: %v", err)
	}
	if len(listed) != 1 || listed[0].Digest != sig.Digest {
		t.Fatalf("referrers = %+v, want %s", listed, sig.Digest)
	}
}

func TestBinaryFromEnv(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(regtest.BinaryEnv, exe)
	if got := regtest.Binary(t); got != exe {
		t.Fatalf("Binary = %q, want %q from %s", got, exe, regtest.BinaryEnv)
	}
}
