// Package keys holds stella's signing keys and makes its signatures.
//
// # Keys
//
// A Pair is an ECDSA P-256 (the default) or Ed25519 private key. Its key id
// is "sha256:" followed by the lowercase hex SHA-256 of the DER
// SubjectPublicKeyInfo of the public key, so the id is stable, derivable
// from the public key PEM alone (`openssl pkey -pubin -outform DER | sha256sum`)
// and identical wherever the key is stored. Public keys travel as PKIX
// "PUBLIC KEY" PEM, the format cosign reads.
//
// A private key file (<name>.key, mode 0600) is the PKCS#8 "PRIVATE KEY" PEM
// of the key encrypted with age to a scrypt passphrase recipient and
// ASCII-armored; `age -d` opens it. No cipher is built here. Keys kept in the
// vault are stored as plain PKCS#8 PEM (MarshalPrivatePEM/ParsePrivatePEM)
// because the vault encrypts them itself.
//
// # Signatures
//
// A signature is a DSSE envelope over an in-toto v1 statement:
//
//	statement (the payload, RFC 8785 canonical JSON):
//	{"_type":"https://in-toto.io/Statement/v1",
//	 "predicate":{...},
//	 "predicateType":"https://stellaops.io/attestations/pack-signature/v1",
//	 "subject":[{"digest":{"sha256":"<hex>"},"name":"<name>"}]}
//
//	envelope (canonical JSON):
//	{"payload":"<base64 of the statement>",
//	 "payloadType":"application/vnd.in-toto+json",
//	 "signatures":[{"keyid":"sha256:<hex>","sig":"<base64>"}]}
//
// The signature covers DSSE's pre-authentication encoding of payloadType and
// payload (secure-systems-lab's dsse.PAE, which sigstore's verifier uses
// too); keyid is an unsigned hint. ECDSA signatures are ASN.1 DER over
// SHA-256 with the nonce derived per RFC 6979; Ed25519 signatures are pure
// Ed25519. Both are deterministic, and so are the statement bytes: the same
// statement signed with the same key always gives the same envelope
// (exported run evidence relies on it, ADR 0011), and the pack signature
// predicate carries no time unless the caller sets one.
//
// Interoperability: cosign verify-blob-attestation --key <name>.pub --type
// <predicateType> --signature <envelope> <blob> accepts these envelopes
// (its DSSE adapter has no key id to compare). sigstore's own
// dsse.WrapVerifier, however, skips a signature whose keyid is set and is
// not the SSH SHA256 fingerprint of its key; a caller using it directly must
// empty the keyid first.
//
// Callers choose the predicate type and predicate (NewStatement), so
// approvals and evidence use the same signing path as packs.
//
// # Parsing untrusted envelopes
//
// ParseEnvelope and OpenEnvelope are strict: at most MaxEnvelopeSize bytes
// and MaxSignatures signatures, valid UTF-8 JSON, no duplicate names, no
// unknown fields, field names matched exactly. OpenEnvelope does not verify
// signatures; it is for display. Verification against trusted keys is
// package trust's job.
package keys
