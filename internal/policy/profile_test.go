package policy_test

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/policy"
)

const day = 24 * time.Hour

func TestParseProfile(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       policy.Profile
	}{
		{"ok/defaults", "", policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			SANTypes:    policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI, MinRSABits: 2048,
			AllowP256: true, AllowP384: true}},
		{"ok/built-in-intune", specIntune, policy.Profile{MaxValidity: 365 * day,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			SANTypes:    policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI, MinRSABits: 2048,
			AllowP256: true, AllowP384: true}},
		{"ok/everything", "validity=90d;ku=digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment,keyAgreement;" +
			"eku=emailProtection,serverAuth,clientAuth;san=dns,ip;minrsa=3072;curves=P-384",
			policy.Profile{MaxValidity: 90 * day, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
				x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection},
				SANTypes:    policy.SANDNS | policy.SANIP, MinRSABits: 3072, AllowP384: true}},
		{"ok/whitespace-case-and-empty-parts", " Validity = 12h ;; KU = DigitalSignature ; EKU=CLIENTAUTH ; san=DNS, UPN ; curves=p256 ;",
			policy.Profile{MaxValidity: 12 * time.Hour, KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, SANTypes: policy.SANDNS | policy.SANUPN,
				MinRSABits: 2048, AllowP256: true}},
		{"ok/curves-none", "curves=none", policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			SANTypes:    policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI, MinRSABits: 2048}},
		{"ok/eku-repeated-once", "eku=clientAuth,clientAuth,CLIENTAUTH", policy.Profile{MaxValidity: 365 * day,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			SANTypes: policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI, MinRSABits: 2048, AllowP256: true, AllowP384: true}},
		{"ok/no-san-types", "san=", policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048, AllowP256: true, AllowP384: true}},
		{"ok/validity-one-hour", "validity=1h", policy.Profile{MaxValidity: time.Hour, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			SANTypes:    policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI, MinRSABits: 2048, AllowP256: true, AllowP384: true}},
		{"ok/validity-five-years", "validity=1830d", policy.Profile{MaxValidity: 1830 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			SANTypes:    policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI, MinRSABits: 2048, AllowP256: true, AllowP384: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseProfile("p1", tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Name = "p1"
			if got.Name != tc.want.Name || got.MaxValidity != tc.want.MaxValidity || got.KeyUsage != tc.want.KeyUsage ||
				!slices.Equal(got.ExtKeyUsage, tc.want.ExtKeyUsage) || got.SANTypes != tc.want.SANTypes ||
				got.MinRSABits != tc.want.MinRSABits || got.AllowP256 != tc.want.AllowP256 || got.AllowP384 != tc.want.AllowP384 {
				t.Fatalf("got  %+v\nwant %+v", *got, tc.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("parsed profile does not validate: %v", err)
			}
		})
	}
}

func TestParseProfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, profile, spec, wantErr string
	}{
		{"fail/no-name", "", "", "no name"},
		{"fail/unknown-key", "p", "validty=30d", `unknown key "validty"`},
		{"fail/not-key-value", "p", "validity", "not key=value"},
		{"fail/ku-unknown", "p", "ku=digitalSignature,bogus", `unknown key usage "bogus"`},
		{"fail/ku-keyCertSign", "p", "ku=digitalSignature,keyCertSign", `unknown key usage "keyCertSign"`},
		{"fail/ku-cRLSign", "p", "ku=cRLSign", `unknown key usage "cRLSign"`},
		{"fail/ku-encipherOnly", "p", "ku=keyAgreement,encipherOnly", `unknown key usage "encipherOnly"`},
		{"fail/ku-empty", "p", "ku=", "no key usage"},
		{"fail/ku-unknown-before-known", "p", "ku=bogus,digitalSignature", `unknown key usage "bogus"`},
		{"fail/eku-codeSigning", "p", "eku=clientAuth,codeSigning", `forbidden extended key usage "codeSigning"`},
		{"fail/eku-any", "p", "eku=anyExtendedKeyUsage", "forbidden extended key usage"},
		{"fail/eku-timeStamping", "p", "eku=timeStamping", "forbidden extended key usage"},
		{"fail/eku-ocspSigning", "p", "eku=OCSPSigning", "forbidden extended key usage"},
		{"fail/eku-empty", "p", "eku=", "no extended key usage"},
		{"fail/san-unknown", "p", "san=dns,x400", `unknown SAN type "x400"`},
		{"fail/minrsa-1024", "p", "minrsa=1024", "minimum RSA size 1024 is below 2048"},
		{"fail/minrsa-not-a-number", "p", "minrsa=big", "profile p"},
		{"fail/curves-p521", "p", "curves=P-256,P-521", `unsupported curve "P-521"`},
		{"fail/validity-too-short", "p", "validity=59m", "below one hour"},
		{"fail/validity-zero", "p", "validity=0d", "below one hour"},
		{"fail/validity-too-long", "p", "validity=1831d", "above five years"},
		{"fail/validity-negative", "p", "validity=-1h", "bad duration"},
		{"fail/validity-garbage", "p", "validity=a year", "bad duration"},
		// Without the bound, 281474976711021 days × 24 h wraps int64 to almost exactly 365 days.
		{"fail/validity-wraps-int64", "p", "validity=281474976711021d", "bad duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.ParseProfile(tc.profile, tc.spec)
			if err == nil {
				t.Fatalf("ParseProfile(%q) = %+v, want error", tc.spec, p)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestProfileValidate covers invariants ParseProfile cannot produce but a hand-built Profile can.
func TestProfileValidate(t *testing.T) {
	good := func() policy.Profile {
		return policy.Profile{Name: "p", MaxValidity: 30 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048}
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*policy.Profile)
		wantErr string
	}{
		{"ok/good", func(*policy.Profile) {}, ""},
		{"fail/keyCertSign", func(p *policy.Profile) { p.KeyUsage |= x509.KeyUsageCertSign }, "keyCertSign"},
		{"fail/cRLSign", func(p *policy.Profile) { p.KeyUsage |= x509.KeyUsageCRLSign }, "cRLSign"},
		{"fail/codeSigning", func(p *policy.Profile) {
			p.ExtKeyUsage = append(p.ExtKeyUsage, x509.ExtKeyUsageCodeSigning)
		}, "is not allowed"},
		{"fail/anyEKU", func(p *policy.Profile) { p.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, "is not allowed"},
		{"fail/ocspSigning", func(p *policy.Profile) { p.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning} }, "is not allowed"},
		{"fail/no-ku", func(p *policy.Profile) { p.KeyUsage = 0 }, "no key usage"},
		{"fail/no-eku", func(p *policy.Profile) { p.ExtKeyUsage = nil }, "no extended key usage"},
		{"fail/minrsa", func(p *policy.Profile) { p.MinRSABits = 0 }, "below 2048"},
		{"fail/validity", func(p *policy.Profile) { p.MaxValidity = 0 }, "below one hour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.mutate(&p)
			err := p.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestProfileAllows(t *testing.T) {
	p := mustProfile(t, "p", "san=dns,upn")
	for typ, want := range map[policy.SANType]bool{policy.SANDNS: true, policy.SANUPN: true, policy.SANEmail: false,
		policy.SANURI: false, policy.SANIP: false} {
		if p.Allows(typ) != want {
			t.Errorf("Allows(%d) = %v", typ, !want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"365d", 365 * day, true},
		{"0d", 0, true},
		{"1d", day, true},
		{"12h", 12 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"0", 0, true},
		{"106751d", 106751 * day, true}, // the largest whole-day count a time.Duration holds
		{"106752d", 0, false},
		{"281474976711021d", 0, false}, // wraps to ~365 days without the bound
		{"99999999999999999999d", 0, false},
		{"-1d", 0, false},
		{"-5m", 0, false},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"", 0, false},
		{"abc", 0, false},
		{"365 d", 0, false},
		{"5D", 0, false},
	} {
		name := "ok/" + tc.in
		if !tc.ok {
			name = "fail/" + tc.in
		}
		t.Run(name, func(t *testing.T) {
			got, err := policy.ParseDuration(tc.in)
			if tc.ok != (err == nil) || got != tc.want {
				t.Fatalf("ParseDuration(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

// TestIPsecProfile: a VPN profile may carry the IPsec EKUs and a CSR asking for them under it is accepted.
func TestIPsecProfile(t *testing.T) {
	p, err := policy.ParseProfile("vpn", "eku=clientAuth,ipsecTunnel,ipsecUser")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ExtKeyUsage) != 3 {
		t.Fatalf("EKUs = %v", p.ExtKeyUsage)
	}
	if _, err := policy.ParseProfile("bad", "eku=codeSigning"); err == nil {
		t.Fatal("codeSigning must stay forbidden")
	}
}
