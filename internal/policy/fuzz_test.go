package policy_test

import (
	"encoding/asn1"
	"testing"
	"unicode"

	"github.com/azscep/azscep/internal/policy"
)

// FuzzCheck feeds arbitrary bytes through the path every request takes (ParseCSR, then Check under the built-in
// profile shapes). It must never panic, must only ever fail with a *policy.Rejection, and whatever it accepts must
// stay inside the profile. Seeds live in testdata/fuzz/FuzzCheck (real CSRs of every shape the tests build).
func FuzzCheck(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x82})
	profiles := []*policy.Profile{
		mustProfile(f, "device", specWide),
		mustProfile(f, "intune", specIntune),
		mustProfile(f, "all", specAllSAN+";curves=P-384"),
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := policy.ParseCSR(der)
		if err != nil {
			if r, ok := policy.AsRejection(err); !ok || r.Code != policy.CodeMalformedCSR {
				t.Fatalf("ParseCSR error %v is not a malformed_csr rejection", err)
			}
			return
		}
		for _, p := range profiles {
			req, err := policy.Check(csr, p)
			if err != nil {
				if r, ok := policy.AsRejection(err); !ok || r.Code == "" || r.Detail == "" {
					t.Fatalf("Check error %v (%T) is not a complete rejection", err, err)
				}
				continue
			}
			assertInsideProfile(t, req, p)
		}
	})
}

// rawRDNSET is an RDN with its values undecoded (encoding/asn1 reads a slice type named …SET as a SET OF).
type rawRDNSET []struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

func assertInsideProfile(t *testing.T, req *policy.Request, p *policy.Profile) {
	t.Helper()
	if req.KeyUsage == 0 || req.KeyUsage&^p.KeyUsage != 0 {
		t.Fatalf("key usage %b escapes profile %b", req.KeyUsage, p.KeyUsage)
	}
	if len(req.ExtKeyUsage) == 0 {
		t.Fatal("no extended key usage")
	}
	for _, e := range req.ExtKeyUsage {
		found := false
		for _, pe := range p.ExtKeyUsage {
			found = found || pe == e
		}
		if !found {
			t.Fatalf("extended key usage %v escapes the profile", e)
		}
	}
	if err := policy.CheckKey(req.PublicKey, p); err != nil {
		t.Fatalf("accepted key fails CheckKey: %v", err)
	}
	names := req.Names()
	if len(names) > 32 {
		t.Fatalf("%d names accepted", len(names))
	}
	for typ, n := range map[policy.SANType]int{policy.SANDNS: len(req.DNSNames), policy.SANEmail: len(req.Emails),
		policy.SANUPN: len(req.UPNs), policy.SANURI: len(req.URIs), policy.SANIP: len(req.IPs)} {
		if n > 0 && !p.Allows(typ) {
			t.Fatalf("SAN type %d accepted but not allowed", typ)
		}
	}
	for _, n := range names {
		for _, r := range n {
			if unicode.IsControl(r) {
				t.Fatalf("name %q has a control character", n)
			}
		}
	}
	if req.SANExtension == nil {
		if len(names) != 0 {
			t.Fatal("names without a SAN extension")
		}
		if len(req.RawSubject) <= 2 {
			t.Fatal("accepted a request that names nobody")
		}
	} else {
		var gns []asn1.RawValue
		if rest, err := asn1.Unmarshal(req.SANExtension.Value, &gns); err != nil || len(rest) != 0 || len(gns) != len(names) {
			t.Fatalf("SAN extension does not parse back to %d names: %v", len(names), err)
		}
	}
	// The subject reaches the certificate byte for byte: only string types every reader decodes alike (a
	// TeletexString only in ASCII), and no NUL (Go drops a BMPString's trailing one).
	var rdns []rawRDNSET
	if rest, err := asn1.Unmarshal(req.RawSubject, &rdns); err != nil || len(rest) != 0 {
		t.Fatalf("accepted subject does not parse: %v", err)
	}
	for _, rdn := range rdns {
		for _, atv := range rdn {
			switch atv.Value.Tag {
			case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString:
			case asn1.TagT61String:
				for _, c := range atv.Value.Bytes {
					if c >= 0x80 {
						t.Fatalf("accepted a TeletexString with 8-bit characters in %s", atv.Type)
					}
				}
			case asn1.TagBMPString:
				for i := 0; i+1 < len(atv.Value.Bytes); i += 2 {
					if atv.Value.Bytes[i] == 0 && atv.Value.Bytes[i+1] == 0 {
						t.Fatalf("accepted a BMPString with a NUL in %s", atv.Type)
					}
				}
			default:
				t.Fatalf("accepted string type %d in %s", atv.Value.Tag, atv.Type)
			}
		}
	}
	switch v := req.Validity; v.Unit {
	case "":
		if v.Units != 0 {
			t.Fatalf("units %d without a unit", v.Units)
		}
	case "Minutes", "Hours", "Days", "Weeks", "Months", "Years":
		if v.Units < 1 || v.Units > 1_000_000 {
			t.Fatalf("units %d out of range", v.Units)
		}
	default:
		t.Fatalf("unit %q accepted", v.Unit)
	}
}
