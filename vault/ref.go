package vault

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
)

// RefPrefix starts a pack secret source that names a vault secret.
const RefPrefix = "vault:"

// ParseRef parses a pack secret source of the form vault:<name> and returns
// the secret name. ok is false for any other source, including an invalid
// name or a field selector (vault:<name>#<field> is not supported).
func ParseRef(source string) (name string, ok bool) {
	name, found := strings.CutPrefix(source, RefPrefix)
	if !found || validName(name) != nil {
		return "", false
	}
	return name, true
}

// PathFromURL returns the file path named by a vault URL such as the value
// of TASKRUNNER_SEALED_VAULT_URL. Only absolute local file URLs are
// accepted: file:///abs/path or file://localhost/abs/path, without user,
// query or fragment. Anything else wraps ErrUnsupportedURL; the message
// never repeats the URL, which could carry credentials.
func PathFromURL(u string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrUnsupportedURL, why)
	}
	parsed, err := url.Parse(u)
	switch {
	case err != nil:
		return bad("malformed url")
	case parsed.Scheme == "":
		return bad("missing scheme, want file:///absolute/path")
	case !strings.EqualFold(parsed.Scheme, "file"):
		return bad(fmt.Sprintf("scheme %s, want file", quoteShort(parsed.Scheme)))
	case parsed.Opaque != "":
		return bad("relative file url, want file:///absolute/path")
	case parsed.User != nil:
		return bad("file url with user information")
	case parsed.Host != "" && !strings.EqualFold(parsed.Host, "localhost"):
		return bad("file url names a remote host")
	case parsed.RawQuery != "" || parsed.ForceQuery || parsed.Fragment != "":
		return bad("file url with query or fragment")
	case parsed.Path == "" || !path.IsAbs(parsed.Path) || strings.HasSuffix(parsed.Path, "/"):
		return bad("file url must name an absolute file path")
	case strings.ContainsRune(parsed.Path, 0):
		return bad("file url path contains a nul byte")
	}
	return filepath.Clean(filepath.FromSlash(parsed.Path)), nil
}
