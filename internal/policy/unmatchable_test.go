package policy_test

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/azscep/azscep/internal/policy"
)

// TestUnmatchablePatterns: Profile.Unmatchable lists exactly the patterns the real check can never satisfy. Each
// listed pattern is shown dead by running Check on the name it seems to allow (refused), and each pattern that
// looks alike but is not listed is shown alive by the same check (accepted), so the list neither cries wolf nor
// misses one.
func TestUnmatchablePatterns(t *testing.T) {
	for _, tc := range []struct {
		key, pattern string
		name         asn1.RawValue // the name the pattern seems to allow
		dead         bool
	}{
		{"dns", "10.0.0.1", gnDNS("10.0.0.1"), true},
		{"dns", "*.10.0.0", gnDNS("host.10.0.0"), true},
		{"dns", "**.0x7f", gnDNS("a.b.0x7f"), true},
		{"uri", "https://10.0.0.1", gnURI("https://10.0.0.1/enroll"), true},
		{"uri", "https://*.10.0.0", gnURI("https://host.10.0.0/"), true},
		{"uri", "IntuneDeviceId:*", gnURI("IntuneDeviceId://0f8fad5b-d9cb-469f-a165-70867728950e"), true},
		{"uri", "intunedeviceid://*.example.com", gnURI("intunedeviceid://dev.example.com"), true},
		// Alike, but alive: a numeric label that is not the last, upper case (patterns and names are compared
		// without case), an e-mail domain (the e-mail check does not refuse numeric domains), tag: and id: URIs
		// that are not Microsoft identity URIs.
		{"dns", "*.10.example.com", gnDNS("host.10.example.com"), false},
		{"dns", "HOST.Example.COM", gnDNS("host.example.com"), false},
		{"email", "*@10.0.0.1", gnEmail("alice@10.0.0.1"), false},
		{"uri", "https://CA.example.com", gnURI("https://ca.example.com/x"), false},
		{"uri", "tag:*", gnURI("tag:example.com,2020:device-1"), false},
		{"uri", "id:*", gnURI("id:asset:17"), false},
	} {
		p := mustProfile(t, "p", tc.key+"="+tc.pattern)
		got := p.Unmatchable()
		_, err := checkDER(buildCSR(t, csrSpec{exts: []pkix.Extension{sanExt(t, tc.name)}}), p)
		if !tc.dead {
			if len(got) != 0 || err != nil {
				t.Errorf("%s=%s: Unmatchable = %+v, Check = %v; want nothing listed and the name accepted", tc.key, tc.pattern, got, err)
			}
			continue
		}
		if len(got) != 1 || got[0].Key != tc.key || got[0].Pattern != tc.pattern || got[0].Reason == "" {
			t.Errorf("%s=%s: Unmatchable = %+v, want that pattern with a reason", tc.key, tc.pattern, got)
		}
		if r, ok := policy.AsRejection(err); !ok || r.Code != policy.CodeSAN {
			t.Errorf("%s=%s: Check = %v, want the name refused", tc.key, tc.pattern, err)
		}
	}

	// Listed in configured order, a live pattern beside them not listed; the built-in-like catch-alls never.
	p := mustProfile(t, "p", "dns=host.example.com,10.0.0.1;uri=https://10.0.0.2,https://ca.example.com")
	got := p.Unmatchable()
	if len(got) != 2 || got[0].Pattern != "10.0.0.1" || got[1].Pattern != "https://10.0.0.2" {
		t.Errorf("Unmatchable = %+v, want 10.0.0.1 and https://10.0.0.2", got)
	}
	if got := mustProfile(t, "p", "dns=*;email=*;upn=*;uri=*;ip=*").Unmatchable(); len(got) != 0 {
		t.Errorf("catch-alls listed: %+v", got)
	}
}
