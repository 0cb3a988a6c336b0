package artifact

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layersSentinel stands in for the layers of a manifest while the rest is
// encoded: encoding/json writes its NUL bytes as \u0000, which no other
// member of a pack manifest can hold.
const layersSentinel = "\x00stella layers\x00"

// marshalManifest is json.Marshal(m), without encoding the layers by
// reflection: a pack of 10,000 files spent a tenth of its build's CPU
// there. The rest of the manifest goes through json.Marshal with the
// layers replaced by one sentinel, and the layers are written in place of
// its encoding: members in the order of ocispec.Descriptor's fields,
// annotations in sorted order, each string as encoding/json writes it. A
// layer with a member this does not write (urls, data, platform,
// artifactType) or a string it does not handle (anything but printable
// ASCII without '"', '\\', '<', '>' or '&', which encoding/json escapes)
// takes the generic path for the whole manifest;
// TestMarshalManifestIsJSON holds the two equal.
func marshalManifest(m ocispec.Manifest) ([]byte, error) {
	layers := m.Layers
	if len(layers) == 0 {
		return json.Marshal(m)
	}
	m.Layers = []ocispec.Descriptor{{MediaType: layersSentinel}}
	rest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	sentinel := []byte(`"layers":[{"mediaType":"\u0000stella layers\u0000","digest":"","size":0}]`)
	encoded, ok := appendLayers(append(make([]byte, 0, 200*len(layers)), `"layers":`...), layers)
	if !ok || bytes.Count(rest, sentinel) != 1 {
		m.Layers = layers
		return json.Marshal(m)
	}
	return bytes.Replace(rest, sentinel, encoded, 1), nil
}

// appendLayers appends the JSON array of layers as encoding/json writes
// it, or reports false when one of them needs the generic path.
func appendLayers(b []byte, layers []ocispec.Descriptor) ([]byte, bool) {
	var keys []string
	b = append(b, '[')
	for i, l := range layers {
		if len(l.URLs) > 0 || len(l.Data) > 0 || l.Platform != nil || l.ArtifactType != "" ||
			!jsonPlain(l.MediaType) || !jsonPlain(string(l.Digest)) {
			return nil, false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"mediaType":"`...)
		b = append(b, l.MediaType...)
		b = append(b, `","digest":"`...)
		b = append(b, l.Digest...)
		b = append(b, `","size":`...)
		b = strconv.AppendInt(b, l.Size, 10)
		if len(l.Annotations) > 0 {
			keys = keys[:0]
			for k, v := range l.Annotations {
				if !jsonPlain(k) || !jsonPlain(v) {
					return nil, false
				}
				keys = append(keys, k)
			}
			slices.Sort(keys)
			b = append(b, `,"annotations":{`...)
			for j, k := range keys {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = append(b, k...)
				b = append(b, `":"`...)
				b = append(b, l.Annotations[k]...)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, ']'), true
}

// jsonPlain reports whether encoding/json writes s as it is, between
// quotes: printable ASCII without '"', '\\' and the characters it escapes
// for HTML.
func jsonPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
