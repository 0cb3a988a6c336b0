package cache

import (
	"encoding/json"
	"testing"
)

// blobRecord.appendJSON writes exactly what json.Marshal writes.
func TestBlobRecordJSON(t *testing.T) {
	for _, br := range []blobRecord{
		{Size: 12, MediaType: "application/vnd.stellaops.pack.file.v1", Refs: 1},
		{Size: 0, Refs: 0},
		{Size: 1 << 40, MediaType: "a<b>&c", Refs: -1},
		{Size: 3, MediaType: "é\"\\\n\u2028", Refs: 7},
	} {
		want, err := json.Marshal(br)
		if err != nil {
			t.Fatal(err)
		}
		if got := br.appendJSON([]byte("x")); string(got) != "x"+string(want) {
			t.Errorf("appendJSON(%+v) = %s, want x%s", br, got, want)
		}
	}
}
