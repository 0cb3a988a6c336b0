package keys

import "errors"

var (
	// ErrUnknownAlgorithm: the algorithm name is not one this package generates.
	ErrUnknownAlgorithm = errors.New("unknown key algorithm")
	// ErrUnsupportedKey: the key is not an ECDSA P-256 or Ed25519 key.
	ErrUnsupportedKey = errors.New("unsupported key type")
	// ErrEmptyPassphrase: a private key file cannot be protected by an empty passphrase.
	ErrEmptyPassphrase = errors.New("empty passphrase")
	// ErrBadPassphrase: the passphrase does not open the private key file.
	ErrBadPassphrase = errors.New("wrong passphrase")
	// ErrNotAKey: the data is not a private key file or PKCS#8 private key PEM.
	ErrNotAKey = errors.New("not a private key")
	// ErrKeyFileCorrupt: the private key file is damaged or was altered.
	ErrKeyFileCorrupt = errors.New("private key file is corrupted")
	// ErrNotAPublicKey: the data is not a PKIX "PUBLIC KEY" PEM block.
	ErrNotAPublicKey = errors.New("not a public key")
	// ErrInvalidName: a key file name is empty or contains a path separator.
	ErrInvalidName = errors.New("invalid key name")
	// ErrExists: a key file would be overwritten.
	ErrExists = errors.New("key file already exists")
	// ErrMalformedEnvelope: the data is not a well-formed DSSE envelope.
	ErrMalformedEnvelope = errors.New("malformed dsse envelope")
	// ErrMalformedStatement: the payload or the statement to sign is not a
	// well-formed in-toto v1 statement.
	ErrMalformedStatement = errors.New("malformed in-toto statement")
)
