package serve

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"stellaops.io/stella/run"
	"stellaops.io/stella/runs"
)

// FuzzQuickHead: for any record runs.Log could write, the quick read of
// its head agrees with a JSON decoder, or declines.
func FuzzQuickHead(f *testing.F) {
	f.Add("a", "stdout", `msg ,"stepId":"x" ,"data":{ "quoted" \`, int64(1), false)
	f.Add("each[1]::touch", "stella", "", int64(1764291600123456789), true)
	f.Add("", "stderr", "\u2028\x00\"", int64(0), false)
	f.Fuzz(func(t *testing.T, step, stream, msg string, nanos int64, data bool) {
		l := run.Line{Time: time.Unix(0, nanos).UTC(), RunID: "run:default:20261128T010000.000000Z", PackID: "p:1", Tenant: "default", StepID: step, Stream: stream, Msg: msg}
		if data {
			l.Msg, l.Data = "", &run.DataRef{Offset: 3, Length: 4}
		}
		raw := l.AppendJSON(nil)
		var want recordHead
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("stored record %s: %v", raw, err)
		}
		got, ok := quickHead(raw)
		if !ok {
			return
		}
		if data {
			t.Fatalf("a record with a data reference read quickly: %s", raw)
		}
		if !got.Time.Equal(want.Time) || got.StepID != want.StepID {
			t.Fatalf("quick head %+v, decoder %+v, of %s", got, want, raw)
		}
	})
}

// TestTailKeepsRecordsWhole: records returned by a read stay intact when
// the read ended inside a record, and that record comes whole next time.
func TestTailKeepsRecordsWhole(t *testing.T) {
	path := t.TempDir() + "/log.ndjson"
	line := func(i int) []byte {
		l := run.Line{Time: time.Unix(int64(i), 0).UTC(), StepID: "s", Stream: "stdout", Msg: fmt.Sprintf("record %d", i)}
		return append(l.AppendJSON(nil), '\n')
	}
	var all []byte
	for i := 0; i < 3; i++ {
		all = append(all, line(i)...)
	}
	cut := len(all) - 5
	if err := os.WriteFile(path, all[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	tl := &tail{path: path, data: (&runs.Store{}).LogData("none")}
	recs, err := tl.read()
	if err != nil || len(recs) != 2 {
		t.Fatalf("first read: %d records, %v", len(recs), err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(all[cut:])
	f.Close()
	more, err := tl.read()
	if err != nil || len(more) != 1 {
		t.Fatalf("second read: %d records, %v", len(more), err)
	}
	for i, r := range append(recs, more...) {
		if string(r.raw)+"\n" != string(line(i)) {
			t.Fatalf("record %d: %q", i, r.raw)
		}
	}
	if more[0].end != int64(len(all)) {
		t.Fatalf("end %d, want %d", more[0].end, len(all))
	}
}
