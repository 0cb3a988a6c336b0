package canonical

import (
	"testing"
)

func TestMarshal(t *testing.T) {
	got, err := Marshal(map[string]any{"b": 1.0, "a": []any{"é", 1e21, 0.1}, "c": "<&>"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":["é",1e+21,0.1],"b":1,"c":"<&>"}`; string(got) != want {
		t.Fatalf("Marshal = %s, want %s", got, want)
	}
}

func TestTransformRefuses(t *testing.T) {
	for _, doc := range []string{`{"a":1,"a":2}`, "\"\xff\"", `{"a":`, `1 2`} {
		if _, err := Transform([]byte(doc)); err == nil {
			t.Errorf("Transform(%q) succeeded", doc)
		}
	}
}
