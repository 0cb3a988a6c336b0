package artifact

import (
	"bytes"
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"stellaops.io/stella/integrity"
)

// layersSentinel stands in for the layers of a manifest while the rest is
// encoded: encoding/json writes its NUL bytes as \u0000, which no other
// member of a pack manifest can hold.
const layersSentinel = "\x00stella layers\x00"

// marshalManifest is json.Marshal(m), without encoding the layers by
// reflection: a pack of 10,000 files spent a tenth of its build's CPU
// there. The layers are encoded by integrity.AppendDescriptors
// (encodeLayers), the rest of the manifest goes through json.Marshal with
// the layers replaced by one sentinel, and the layers are written in place
// of its encoding (marshalWithLayers). Layers AppendDescriptors does not
// take send the whole manifest down the generic path;
// TestMarshalManifestIsJSON holds the two equal.
func marshalManifest(m ocispec.Manifest) ([]byte, error) {
	enc, ok := encodeLayers(m.Layers)
	return marshalWithLayers(m, enc, ok)
}

// encodeLayers is the JSON array of layers as json.Marshal writes it, and
// true, when integrity.AppendDescriptors takes them. A build runs it
// beside the config's encoding.
func encodeLayers(layers []ocispec.Descriptor) ([]byte, bool) {
	if len(layers) == 0 {
		return nil, false
	}
	size := 2 // about what the layers take, so that the buffer is not grown
	for _, l := range layers {
		size += 64 + len(l.MediaType) + len(l.Digest)
		for k, v := range l.Annotations {
			size += len(k) + len(v) + 6
		}
	}
	return integrity.AppendDescriptors(make([]byte, 0, size), layers)
}

// marshalWithLayers is marshalManifest of m whose layers encodeLayers
// encoded as enc (ok false: json.Marshal(m) whole).
func marshalWithLayers(m ocispec.Manifest, enc []byte, ok bool) ([]byte, error) {
	if !ok {
		return json.Marshal(m)
	}
	layers := m.Layers
	m.Layers = []ocispec.Descriptor{{MediaType: layersSentinel}}
	rest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	sentinel := []byte(`"layers":[{"mediaType":"\u0000stella layers\u0000","digest":"","size":0}]`)
	out, ok := splice(rest, sentinel, len(`"layers":`)+len(enc), func(b []byte) ([]byte, bool) {
		return append(append(b, `"layers":`...), enc...), true
	})
	if !ok {
		m.Layers = layers
		return json.Marshal(m)
	}
	return out, nil
}

// splice returns rest with its one sentinel replaced by what write appends,
// written once into a buffer of about its final size (size estimates what
// write appends): a pack of 10,000 files has a manifest of ~2.5 MB, which
// an encoding appended apart and then copied in place grew and copied
// again. It reports false when rest holds the sentinel other than once,
// or write does.
func splice(rest, sentinel []byte, size int, write func([]byte) ([]byte, bool)) ([]byte, bool) {
	i := bytes.Index(rest, sentinel)
	if i < 0 || bytes.Contains(rest[i+len(sentinel):], sentinel) {
		return nil, false
	}
	out := append(make([]byte, 0, len(rest)-len(sentinel)+size), rest[:i]...)
	out, ok := write(out)
	if !ok {
		return nil, false
	}
	return append(out, rest[i+len(sentinel):]...), true
}
