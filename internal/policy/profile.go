// Package policy decides what a certificate request may become. It is pure: no I/O, no clocks it does not get
// passed, no keys. The issuance package builds the certificate from a Profile and the Request this package
// returns; nothing else from the CSR reaches the template (Boulder's rule: content comes from the profile).
package policy

import (
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SANType is one kind of subject alternative name a profile may allow.
type SANType uint8

// The SAN types the CA understands. UPN is the Microsoft otherName 1.3.6.1.4.1.311.20.2.3.
const (
	SANDNS SANType = 1 << iota
	SANEmail
	SANUPN
	SANURI
	SANIP
)

var sanTypeNames = map[string]SANType{"dns": SANDNS, "email": SANEmail, "upn": SANUPN, "uri": SANURI, "ip": SANIP}

// Profile is the certificate content an endpoint issues. A CSR may narrow KeyUsage and ExtKeyUsage, never widen.
type Profile struct {
	Name        string
	MaxValidity time.Duration
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	// Names holds the allow-list of every SAN type the profile allows; a type without an entry is refused.
	Names map[SANType]*AllowList
	// IdentityURIs are the Microsoft identity names (SID and IntuneDeviceId URIs, a device-ID CN) the profile
	// accepts; none by default.
	IdentityURIs IdentityURI
	MinRSABits   int
	// AllowP384 and AllowP256 select the ECDSA curves accepted; RSA is always accepted at MinRSABits or more.
	AllowP256 bool
	AllowP384 bool
}

// Allows reports whether t is among the profile's SAN types (with some allow-list).
func (p *Profile) Allows(t SANType) bool { return p.Names[t] != nil }

// Validate checks the profile's own invariants; constructors call it so a bad profile never serves.
func (p *Profile) Validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("profile has no name")
	case p.MaxValidity < time.Hour:
		return fmt.Errorf("profile %s: validity %s is below one hour", p.Name, p.MaxValidity)
	case p.MaxValidity > 5*366*24*time.Hour:
		return fmt.Errorf("profile %s: validity %s is above five years", p.Name, p.MaxValidity)
	case p.KeyUsage == 0:
		return fmt.Errorf("profile %s: no key usage", p.Name)
	case p.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return fmt.Errorf("profile %s: keyCertSign/cRLSign are not allowed in a leaf profile", p.Name)
	case len(p.ExtKeyUsage) == 0:
		return fmt.Errorf("profile %s: no extended key usage", p.Name)
	case p.MinRSABits < 2048:
		return fmt.Errorf("profile %s: minimum RSA size %d is below 2048", p.Name, p.MinRSABits)
	}
	for _, e := range p.ExtKeyUsage {
		if _, ok := ekuNames[e]; !ok {
			return fmt.Errorf("profile %s: extended key usage %d is not allowed", p.Name, e)
		}
	}
	return nil
}

var kuNames = []struct {
	name string
	ku   x509.KeyUsage
}{
	{"digitalSignature", x509.KeyUsageDigitalSignature},
	{"nonRepudiation", x509.KeyUsageContentCommitment},
	{"keyEncipherment", x509.KeyUsageKeyEncipherment},
	{"dataEncipherment", x509.KeyUsageDataEncipherment},
	{"keyAgreement", x509.KeyUsageKeyAgreement},
}

// ekuNames lists the EKUs a leaf profile may carry. Code signing, time stamping, OCSP signing and
// anyExtendedKeyUsage are deliberately absent: this CA issues device and user identities, and none of those may
// ever be delegated to one. serverAuth stays available for devices that also terminate TLS (network gear).
var ekuNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageClientAuth:      "clientAuth",
	x509.ExtKeyUsageServerAuth:      "serverAuth",
	x509.ExtKeyUsageEmailProtection: "emailProtection",
	// IPsec EKUs for VPN profiles (Intune SCEP profiles offer "IP security tunnel termination" and friends).
	x509.ExtKeyUsageIPSECEndSystem: "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel:    "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser:      "ipsecUser",
}

// ParseProfile reads a profile from its setting value, a semicolon-separated list of key=value pairs:
//
//	validity=365d;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*.corp.example.com;upn=*@contoso.com;minrsa=2048;curves=P-256,P-384
//
// Each SAN type the profile allows is a key with its allow-list (names.go); a profile without any allows no SANs
// (the subject only). Unknown keys are errors so a typo never silently weakens a profile.
func ParseProfile(name, spec string) (*Profile, error) {
	p := &Profile{Name: name, MaxValidity: 365 * 24 * time.Hour, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Names: map[SANType]*AllowList{},
		MinRSABits: 2048, AllowP256: true, AllowP384: true}
	kuSet := false
	// Every key at most once: an edit that changes one copy of a key and misses a stale one further on must not
	// leave the last copy silently in force (a longer validity, a wider EKU).
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("profile %s: %q is not key=value", name, part)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if seen[k] {
			return nil, fmt.Errorf("profile %s: %s= is given twice", name, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "validity":
			p.MaxValidity, err = ParseDuration(v)
		case "ku":
			kuSet = true
			p.KeyUsage = 0
			for _, n := range splitList(v) {
				found := false
				for _, e := range kuNames {
					if strings.EqualFold(e.name, n) {
						p.KeyUsage |= e.ku
						found = true
					}
				}
				if !found {
					err = fmt.Errorf("unknown key usage %q", n)
				}
			}
		case "eku":
			p.ExtKeyUsage = nil
			for _, n := range splitList(v) {
				found := false
				for eku, en := range ekuNames {
					if strings.EqualFold(en, n) {
						// A repeated name would otherwise put the same OID in the certificate twice.
						if !containsEKU(p.ExtKeyUsage, eku) {
							p.ExtKeyUsage = append(p.ExtKeyUsage, eku)
						}
						found = true
					}
				}
				if !found {
					err = fmt.Errorf("unknown or forbidden extended key usage %q", n)
				}
			}
			sort.Slice(p.ExtKeyUsage, func(i, j int) bool { return p.ExtKeyUsage[i] < p.ExtKeyUsage[j] })
		case "san":
			// The old form allowed every name of the listed types without saying so.
			err = fmt.Errorf("san= is replaced by one key per name type with its allowed patterns, " +
				"e.g. dns=*.corp.example.com;upn=*@contoso.com (write dns=* to allow any DNS name)")
		case "dns", "email", "upn", "uri", "ip":
			t := sanTypeNames[k]
			var l *AllowList
			if l, err = parseAllowList(t, v); err == nil {
				p.Names[t] = l
			} else {
				err = fmt.Errorf("%s=: %w", k, err)
			}
		case "identity_uris":
			p.IdentityURIs = 0
			for _, n := range splitList(v) {
				t, ok := identityURINames[strings.ToLower(n)]
				if !ok && !strings.EqualFold(n, "none") {
					err = fmt.Errorf("unknown identity URI kind %q (sid, intunedeviceid, devicecn or none)", n)
				}
				p.IdentityURIs |= t
			}
		case "minrsa":
			p.MinRSABits, err = strconv.Atoi(v)
		case "curves":
			p.AllowP256, p.AllowP384 = false, false
			for _, n := range splitList(v) {
				switch strings.ToUpper(n) {
				case "P-256", "P256":
					p.AllowP256 = true
				case "P-384", "P384":
					p.AllowP384 = true
				case "NONE":
				default:
					err = fmt.Errorf("unsupported curve %q", n)
				}
			}
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
	}
	if !kuSet && (slices.Contains(p.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(p.ExtKeyUsage, x509.ExtKeyUsageEmailProtection)) {
		// RSA key transport (TLS_RSA_* suites, S/MIME encryption) needs keyEncipherment, and mail clients do not
		// encrypt to an RSA certificate without it; an EC key never gets it (the CSR check drops it).
		p.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// ParseDuration accepts Go durations plus whole days ("365d").
func ParseDuration(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err := strconv.Atoi(n)
		// The upper bound keeps the multiplication below from wrapping into a plausible-looking duration.
		if err != nil || d < 0 || d > maxDurationDays {
			return 0, fmt.Errorf("bad duration %q", v)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad duration %q", v)
	}
	return d, nil
}

// maxDurationDays is the largest day count a time.Duration holds (about 292 years).
const maxDurationDays = int(math.MaxInt64 / int64(24*time.Hour))

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
