package redact

import "errors"

// MinLen is the length of the shortest value that can be masked safely:
// shorter ones would mask ordinary words and numbers all over a log, and
// their masks would tell where the value is.
const MinLen = 8

// Mask is what replaces each run of masked bytes.
const Mask = "***"

// ErrTooShort: a value is shorter than MinLen once trimmed of surrounding
// whitespace, so it cannot be masked safely. The message never contains
// the value nor its length; the caller names the secret.
var ErrTooShort = errors.New("secret value too short to mask safely")
