package plan

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/opencontainers/go-digest"

	"stellaops.io/stella/pack"
)

// TestSecretEnvDeliveryHash pins the plan hash of a pack that asks for a
// secret in an environment variable: the delivery is part of what an
// approver approves, so choosing it changes the hash, and not choosing it
// leaves every earlier hash as it was (TestGoldenHashes).
func TestSecretEnvDeliveryHash(t *testing.T) {
	const manifest = `apiVersion: stellaops.io/pack.v1
kind: TaskPack
metadata: {name: env-delivery, version: 1.0.0, description: a secret in the environment}
spec:
  secrets:
    - {name: db, source: "vault:db", required: true, env: DB_PASSWORD}
    - {name: token, source: "vault:token"}
  steps:
    - id: migrate
      run: {command: [migrate], secrets: [db, token]}
`
	build := func(m string) digest.Digest {
		p, err := pack.Load(fstest.MapFS{"pack.yaml": {Data: []byte(m)}})
		if err != nil {
			t.Fatal(err)
		}
		pl, err := Build(p, digest.Digest("sha256:"+zeros64), nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := pl.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	const want = digest.Digest("sha256:5227562528ae0cd1d3bdb84f168201779665a10aa220725c9b71ed2f1f780b87")
	if got := build(manifest); got != want {
		t.Errorf("plan hash %s, want %s", got, want)
	}
	if got := build(strings.Replace(manifest, ", env: DB_PASSWORD", "", 1)); got == want {
		t.Errorf("the delivery does not change the plan hash")
	}
}

const zeros64 = "0000000000000000000000000000000000000000000000000000000000000000"
