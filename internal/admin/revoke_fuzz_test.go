package admin

import (
	"bytes"
	"encoding/json"
	"runtime"
	"testing"
	"unicode/utf8"
)

// FuzzParseRevokeBody checks the strict reading of a revoke request's body against encoding/json: whatever it
// accepts is a JSON object whose members are "reason" and/or "comment" (spelled exactly so, each at most once)
// with string values, and the values it returns are the ones encoding/json reads (re-encoding them reads back the
// same); whatever it refuses is not such an object. One call on a body of the handler's 4 KiB limit allocates a
// bounded amount.
func FuzzParseRevokeBody(f *testing.F) {
	for _, s := range []string{
		`{"reason": "keyCompromise"}`,
		`{"reason": "superseded", "comment": "replaced by 01AB"}`,
		`{}`,
		` {"comment":"\u00e9\ud83d\ude00"} `,
		`{"Reason": "keyCompromise"}`,
		`{"reason": "a", "reason": "b"}`,
		`{"reason": null}`,
		`{"reason": "a"} {}`,
		`{"reason": "a"}x`,
		`[]`,
		`null`,
		``,
		`{"reason": "a",}`,
		`{"reason" "a"}`,
		`{"reason": 1}`,
		`{"a":{"b":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 4<<10 {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := parseRevokeBody(body)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10+16*uint64(len(body)) {
			t.Errorf("%d-byte body: parsing allocated %d KiB", len(body), alloc>>10)
		}

		members, strict := reference(body)
		if err != nil {
			if strict {
				t.Fatalf("refused %q (%v), a plain object of reason/comment strings", body, err)
			}
			return
		}
		if !strict {
			t.Fatalf("accepted %q as %+v, which is not a plain object of reason/comment strings", body, got)
		}
		if members["reason"] != got.Reason || members["comment"] != got.Comment {
			t.Fatalf("%q: got %+v, encoding/json reads %v", body, got, members)
		}
		if !utf8.ValidString(got.Reason) || !utf8.ValidString(got.Comment) {
			t.Fatalf("%q: values not valid UTF-8: %+v", body, got)
		}
		again, err := json.Marshal(map[string]string{"reason": got.Reason, "comment": got.Comment})
		if err != nil {
			t.Fatal(err)
		}
		if back, err := parseRevokeBody(again); err != nil || back != got {
			t.Fatalf("re-encoded %s reads back as %+v, %v; want %+v", again, back, err, got)
		}
	})
}

// reference reads body with encoding/json: strict is true when it is one JSON object (surrounding white space
// allowed), all of whose members are named exactly "reason" or "comment", appear once and have string values.
func reference(body []byte) (members map[string]string, strict bool) {
	if !json.Valid(body) {
		return nil, false
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, false
	}
	members = map[string]string{}
	for name, v := range raw {
		if name != "reason" && name != "comment" {
			return nil, false
		}
		var s string
		if bytes.Equal(v, []byte("null")) || json.Unmarshal(v, &s) != nil {
			return nil, false
		}
		members[name] = s
	}
	// Count the members as written: encoding/json keeps the last of two with one name.
	dec := json.NewDecoder(bytes.NewReader(body))
	depth, n := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		default:
			if depth == 1 {
				n++
			}
		}
	}
	return members, n == 2*len(raw)
}
