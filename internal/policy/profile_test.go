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

// sanTypes lists the SAN types a profile allows, for comparisons.
func sanTypes(p *policy.Profile) policy.SANType {
	var t policy.SANType
	for _, x := range []policy.SANType{policy.SANDNS, policy.SANEmail, policy.SANUPN, policy.SANURI, policy.SANIP} {
		if p.Allows(x) {
			t |= x
		}
	}
	return t
}

func TestParseProfile(t *testing.T) {
	all := policy.SANDNS | policy.SANEmail | policy.SANUPN | policy.SANURI
	for _, tc := range []struct {
		name, spec string
		want       policy.Profile
		types      policy.SANType
	}{
		// Without name keys a profile allows no SANs at all: the subject only.
		{"ok/defaults", "", policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048,
			AllowP256: true, AllowP384: true}, 0},
		{"ok/built-in-device", specDevice, policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048,
			AllowP256: true, AllowP384: true}, policy.SANDNS},
		{"ok/built-in-intune", specIntune, policy.Profile{MaxValidity: 365 * day,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048,
			IdentityURIs: policy.IdentitySID | policy.IdentityIntuneDeviceID | policy.IdentityDeviceCN,
			AllowP256:    true, AllowP384: true}, all},
		{"ok/everything", "validity=90d;ku=digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment,keyAgreement;" +
			"eku=emailProtection,serverAuth,clientAuth;dns=*.corp.example.com;ip=10.0.0.0/8;minrsa=3072;curves=P-384",
			policy.Profile{MaxValidity: 90 * day, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
				x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection},
				MinRSABits:  3072, AllowP384: true}, policy.SANDNS | policy.SANIP},
		{"ok/whitespace-case-and-empty-parts", " Validity = 12h ;; KU = DigitalSignature ; EKU=CLIENTAUTH ; DNS=* ; upn = *@Contoso.com ; curves=p256 ;",
			policy.Profile{MaxValidity: 12 * time.Hour, KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				MinRSABits:  2048, AllowP256: true}, policy.SANDNS | policy.SANUPN},
		{"ok/curves-none", "curves=none", policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048}, 0},
		{"ok/eku-repeated-once", "eku=clientAuth,clientAuth,CLIENTAUTH", policy.Profile{MaxValidity: 365 * day,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			MinRSABits: 2048, AllowP256: true, AllowP384: true}, 0},
		{"ok/identity-uris-none", "identity_uris=none", policy.Profile{MaxValidity: 365 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048, AllowP256: true, AllowP384: true}, 0},
		{"ok/identity-uris-device-only", "identity_uris=IntuneDeviceId", policy.Profile{MaxValidity: 365 * day,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048,
			IdentityURIs: policy.IdentityIntuneDeviceID | policy.IdentityDeviceCN, AllowP256: true, AllowP384: true}, 0},
		{"ok/identity-uris-device-cn-only", "identity_uris=DeviceCN", policy.Profile{MaxValidity: 365 * day,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048,
			IdentityURIs: policy.IdentityDeviceCN, AllowP256: true, AllowP384: true}, 0},
		{"ok/validity-one-hour", "validity=1h", policy.Profile{MaxValidity: time.Hour, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048, AllowP256: true, AllowP384: true}, 0},
		{"ok/validity-five-years", "validity=1830d", policy.Profile{MaxValidity: 1830 * day, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinRSABits: 2048, AllowP256: true, AllowP384: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseProfile("p1", tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Name = "p1"
			if got.Name != tc.want.Name || got.MaxValidity != tc.want.MaxValidity || got.KeyUsage != tc.want.KeyUsage ||
				!slices.Equal(got.ExtKeyUsage, tc.want.ExtKeyUsage) || sanTypes(got) != tc.types ||
				got.IdentityURIs != tc.want.IdentityURIs ||
				got.MinRSABits != tc.want.MinRSABits || got.AllowP256 != tc.want.AllowP256 || got.AllowP384 != tc.want.AllowP384 {
				t.Fatalf("got  %+v (SAN types %b)\nwant %+v (SAN types %b)", *got, sanTypes(got), tc.want, tc.types)
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
		{"fail/san-old-form", "p", "san=dns,upn", "san= is replaced by one key per name type"},
		{"fail/san-empty-old-form", "p", "san=", "san= is replaced"},
		{"fail/dns-empty", "p", "dns=", "no patterns"},
		{"fail/dns-only-commas", "p", "dns= , ,", "no patterns"},
		{"fail/dns-twice", "p", "dns=a.example.com;dns=*", "given twice"},
		// A stale copy of a key further on must not win over the one just edited.
		{"fail/validity-twice", "p", "validity=30d;eku=clientAuth;validity=1825d", "validity= is given twice"},
		{"fail/eku-twice", "p", "eku=clientAuth;dns=*;eku=clientAuth,serverAuth", "eku= is given twice"},
		{"fail/ku-twice", "p", "ku=digitalSignature;KU=digitalSignature,keyEncipherment", "ku= is given twice"},
		{"fail/identity-uris-twice", "p", "identity_uris=none;identity_uris=sid,intunedeviceid", "identity_uris= is given twice"},
		{"fail/minrsa-twice", "p", "minrsa=3072;minrsa=2048", "minrsa= is given twice"},
		{"fail/curves-twice", "p", "curves=P-384;curves=P-256,P-384", "curves= is given twice"},
		{"fail/dns-double-star", "p", "dns=**", "is not a DNS name"},
		{"fail/dns-star-star-dot", "p", "dns=*.*", "is not a DNS name"},
		{"fail/dns-inner-star", "p", "dns=a.*.example.com", "is not a DNS name"},
		{"fail/dns-partial-label-star", "p", "dns=dev*.example.com", "is not a DNS name"},
		{"fail/dns-trailing-dot", "p", "dns=*.example.com.", "is not a DNS name"},
		{"fail/upn-no-at", "p", "upn=contoso.com", "is not local@domain"},
		{"fail/upn-star-domain", "p", "upn=*@*", "is not a DNS name"},
		{"fail/upn-partial-local-star", "p", "upn=adm*@contoso.com", "local part is * or a literal"},
		{"fail/email-no-local", "p", "email=@contoso.com", "is not local@domain"},
		{"fail/ip-all-v4", "p", "ip=0.0.0.0/0", "matches every address"},
		{"fail/ip-all-v6", "p", "ip=10.0.0.0/8,::/0", "matches every address"},
		{"fail/ip-host-bits", "p", "ip=10.1.2.3/8", "host bits set"},
		{"fail/ip-garbage", "p", "ip=10.0.0.0/33", "not an IP address or CIDR"},
		{"fail/uri-no-scheme", "p", "uri=*.example.com", "is not scheme://host-pattern"},
		{"fail/uri-star-host", "p", "uri=https://*", "is not a DNS name"},
		{"fail/uri-path", "p", "uri=https://example.com/path", "is not a DNS name"},
		{"fail/uri-bad-scheme", "p", "uri=1http://example.com", "is not scheme://host-pattern"},
		{"fail/identity-uris-unknown", "p", "identity_uris=sid,upn", `unknown identity URI kind "upn"`},
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
	p := mustProfile(t, "p", "dns=*;upn=*@contoso.com")
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

// TestProfileDefaultKeyUsageFollowsEKU: without ku=, a profile for TLS servers or S/MIME gets keyEncipherment
// beside digitalSignature (RSA key transport and mail encryption need it); other profiles, and a profile that
// writes ku=, get exactly what they say.
func TestProfileDefaultKeyUsageFollowsEKU(t *testing.T) {
	for spec, want := range map[string]x509.KeyUsage{
		"eku=serverAuth;dns=*":                     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		"eku=emailProtection;email=*":              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		"eku=clientAuth,serverAuth;dns=*":          x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		"eku=clientAuth;dns=*":                     x509.KeyUsageDigitalSignature,
		"ku=digitalSignature;eku=serverAuth;dns=*": x509.KeyUsageDigitalSignature,
	} {
		p, err := policy.ParseProfile("p", spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if p.KeyUsage != want {
			t.Errorf("%s: key usage %b, want %b", spec, p.KeyUsage, want)
		}
	}
}
