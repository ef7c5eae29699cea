package policy

import (
	"encoding/asn1"
	"testing"
	"time"
)

// FuzzParseValidity drives the Microsoft validity attribute parser directly with the attribute's SET contents.
// Seeds (both encodings, malformed pairs) live in testdata/fuzz/FuzzParseValidity.
func FuzzParseValidity(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x00})
	from := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var values []asn1.RawValue
		for rest := data; len(rest) > 0; {
			var v asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &v); err != nil {
				return
			}
			values = append(values, v)
		}
		v, err := parseValidityAttribute(values)
		if err != nil {
			if v != (RequestedValidity{}) {
				t.Fatalf("error %v with a value %+v", err, v)
			}
			return
		}
		if v.Unit == "" {
			if v.Units != 0 {
				t.Fatalf("units %d without a unit", v.Units)
			}
			return
		}
		if v.Units < minPeriodUnits || v.Units > 1_000_000 {
			t.Fatalf("units %d accepted", v.Units)
		}
		if !v.NotAfter(from).After(from) {
			t.Fatalf("%+v does not move NotAfter forward", v)
		}
	})
}
