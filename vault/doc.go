// Package vault is the sealed vault: one encrypted file holding named
// secrets (value, scope, metadata, created/updated times) and private
// signing keys (name, PKCS#8 PEM, algorithm, key id, public PEM), from which
// runs take the secrets their packs reference as vault:<name>.
//
// # Format
//
// The file is a plain binary age v1 file (filippo.io/age) and nothing else:
// age's own first line, "age-encryption.org/v1", identifies it, so there is
// no extra plaintext header and an operator can recover the content with
// the age tool alone. It is sealed either with a passphrase (age scrypt
// recipient, age's default work factor) or to the recipients of an age
// identity file (X25519 or hybrid post-quantum). The payload is canonical
// JSON (RFC 8785, sorted keys, UTC RFC 3339 times, byte fields base64):
//
//	{"format":"stella-vault/v1","keys":{NAME:{"algorithm","created","key_id",
//	 "private_pem","public_pem"}},"secrets":{NAME:{"created","meta"?,"scope",
//	 "updated","value"}}}
//
// Open accepts exactly that canonical form, so a rewrite never drops or
// alters a field it did not understand. Names match
// ^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,127}$.
//
// # Errors on open
//
// Not age, or age whose payload is not a stella vault: ErrNotAVault. No
// identity matches: ErrBadPassphrase (also *age.NoIdentityMatchError).
// Header MAC or STREAM chunk authentication fails, or the file ends early:
// ErrCorrupt. Damage inside the recipient stanza itself cannot be told apart
// from a wrong passphrase; age reports it as no match, and so does Open.
//
// # Invariants
//
//   - Every change is read-modify-write under an exclusive lock on
//     <path>.lock (gofrs/flock, bounded wait, ErrLocked naming the holder's
//     pid): the file is re-read and decrypted inside the lock, changed, and
//     replaced with internal/safefile (temp, fsync, rename, fsync dir) at
//     mode 0600. Concurrent writers never lose each other's updates, a
//     killed writer leaves the old or the new file, and any failure leaves
//     both the file and the handle's snapshot unchanged. The next write
//     removes temp files a killed writer left.
//   - Secret values and private keys appear only inside the encrypted file.
//     Value and every type holding one render "[redacted]" for every fmt
//     verb, JSON, text and slog; errors name secrets, never values (nor
//     invalid names, which may be a misplaced value); List shows at most
//     the last four characters of values of twelve or more. Buffers this
//     package owns are zeroed after use and on Close.
//
// # Threat model
//
// Protected at rest: a copy of the file (backup, lost disk, shared media)
// reveals nothing but its approximate size and the age recipient types
// without the passphrase or identity, and any alteration or truncation is
// detected. Not protected: a process that runs as the same user while the
// vault is open or the passphrase is typed (memory, ptrace, key loggers),
// a weak passphrase against offline guessing (scrypt only slows it),
// rollback to an older genuine copy of the file, and whatever a caller
// does with a revealed value. Go's garbage collector and age's internal
// buffers may keep copies that this package cannot zero.
package vault
