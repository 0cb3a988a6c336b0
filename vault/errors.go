package vault

import "errors"

var (
	// ErrVaultNotFound: there is no vault file at the path.
	ErrVaultNotFound = errors.New("vault not found")
	// ErrExists: Init would overwrite an existing file, or PutKey would
	// replace a key of the same name.
	ErrExists = errors.New("already exists")
	// ErrNotAVault: the file is not an age file, or it decrypts to something
	// that is not a stella vault payload.
	ErrNotAVault = errors.New("not a stella vault")
	// ErrBadPassphrase: the passphrase or identity does not open the vault.
	// The error also matches *age.NoIdentityMatchError with errors.As.
	ErrBadPassphrase = errors.New("wrong passphrase or identity")
	// ErrCorrupt: the vault file was altered or truncated (age's header MAC or
	// STREAM authentication failed, or the file ends early).
	ErrCorrupt = errors.New("vault file is corrupted or was tampered with")
	// ErrInvalidUnlocker: the passphrase is empty or the identity file holds
	// no usable age identity.
	ErrInvalidUnlocker = errors.New("invalid passphrase or identity file")
	// ErrInvalidName: a secret, key or metadata name does not match
	// ^[a-zA-Z0-9][a-zA-Z0-9._/-]{0,127}$.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidEntry: a value, scope, metadata value or key field is
	// empty, too long, not printable, or (for keys) not valid PEM.
	ErrInvalidEntry = errors.New("invalid vault entry")
	// ErrSecretNotFound: the vault holds no secret of that name.
	ErrSecretNotFound = errors.New("secret not found")
	// ErrKeyNotFound: the vault holds no signing key of that name.
	ErrKeyNotFound = errors.New("signing key not found")
	// ErrInvalidRef: a secret source is not of the form vault:<name>.
	ErrInvalidRef = errors.New("invalid vault reference")
	// ErrLocked: another process held the vault lock for longer than
	// Options.LockTimeout.
	ErrLocked = errors.New("vault is locked by another process")
	// ErrUnsupportedURL: a vault URL is not an absolute file:/// URL.
	ErrUnsupportedURL = errors.New("unsupported vault url")
	// ErrClosed: the Vault was closed.
	ErrClosed = errors.New("vault is closed")
)
