package artifact

import (
	"strconv"

	"stellaops.io/stella/canonical"
)

// filesSentinel stands in for the files of a config while the rest is
// made canonical: its encoding, with the NUL bytes JCS writes as \u0000,
// cannot come from anything else in the config.
const filesSentinel = "\x00stella files\x00"

// maxExactInt is the largest integer RFC 8785 (ES6 number formatting)
// writes as plain decimal digits exactly as strconv does (2^53).
const maxExactInt = 1 << 53

// marshalConfig is canonical.Marshal(cfg), without running the generic
// canonicalization over the files list: a pack of 10,000 files spent a
// tenth of its build there. The rest of the config goes through
// canonical.Marshal with the files replaced by one sentinel entry, and the
// files are written in place of its encoding: keys in sorted order
// (digest, mode, path, size), each string as RFC 8785 writes it. A file
// with a string this does not handle (anything but printable ASCII
// without quote or backslash) or a size past 2^53 takes the generic path
// for the whole config; TestMarshalConfigCanonical holds the two equal.
func marshalConfig(cfg PackConfig) ([]byte, error) {
	files := cfg.Files
	if files == nil {
		return canonical.Marshal(cfg)
	}
	cfg.Files = []PackFile{{Path: filesSentinel}}
	rest, err := canonical.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sentinel := []byte(`[{"digest":"","mode":"","path":"\u0000stella files\u0000","size":0}]`)
	size := 0 // about what the files take (see splice)
	for _, f := range files {
		size += 64 + len(f.Digest) + len(f.Mode) + len(f.Path)
	}
	out, ok := splice(rest, sentinel, size, func(b []byte) ([]byte, bool) { return appendFiles(b, files) })
	if !ok {
		cfg.Files = files
		return canonical.Marshal(cfg)
	}
	return out, nil
}

// appendFiles appends the canonical JSON array of files, or reports false
// when one of them needs the generic path.
func appendFiles(b []byte, files []PackFile) ([]byte, bool) {
	b = append(b, '[')
	for i, f := range files {
		if !plainASCII(string(f.Digest)) || !plainASCII(f.Mode) || !plainASCII(f.Path) || f.Size < 0 || f.Size > maxExactInt {
			return nil, false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"digest":"`...)
		b = append(b, f.Digest...)
		b = append(b, `","mode":"`...)
		b = append(b, f.Mode...)
		b = append(b, `","path":"`...)
		b = append(b, f.Path...)
		b = append(b, `","size":`...)
		b = strconv.AppendInt(b, f.Size, 10)
		b = append(b, '}')
	}
	return append(b, ']'), true
}

// plainASCII reports whether s is printable ASCII without '"' or '\\':
// written as it is in canonical JSON.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
