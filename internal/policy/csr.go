package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/azscep/azscep/internal/entra"
)

// Code is a stable, machine-readable reason a request was refused. It appears in problem+json bodies, in logs
// and (mapped to a failInfo) in SCEP answers.
type Code string

// Rejection codes. Clients and dashboards may rely on these strings.
const (
	CodeMalformedCSR       Code = "malformed_csr"
	CodeBadSignatureAlg    Code = "bad_signature_algorithm"
	CodeBadCSRSignature    Code = "bad_csr_signature"
	CodeBadKey             Code = "bad_key"
	CodeForbiddenExtension Code = "forbidden_extension"
	CodeKeyUsage           Code = "key_usage_not_allowed"
	CodeExtKeyUsage        Code = "extended_key_usage_not_allowed"
	CodeSAN                Code = "subject_alt_name_not_allowed"
	CodeSubject            Code = "bad_subject"
	CodeValidity           Code = "bad_validity"
	CodeChallenge          Code = "bad_challenge"
	CodeNotAuthorized      Code = "not_authorized"
	// CodeNameConstraints: a name the issuing CA certificate's name constraints (RFC 5280 §4.2.1.10) do not allow;
	// found by the lint of the planned certificate (internal/lint), not by Check.
	CodeNameConstraints Code = "name_constraints"
	// CodeKeyCompromised: the request's key was reported compromised (a certificate for it was revoked for
	// keyCompromise); found by the issuer, not by Check.
	CodeKeyCompromised Code = "key_compromised"
)

// Rejection is a policy refusal: the request is well-formed enough to answer but may not be issued.
type Rejection struct {
	Code   Code
	Detail string
}

func (r *Rejection) Error() string { return fmt.Sprintf("%s: %s", r.Code, r.Detail) }

func reject(c Code, format string, args ...any) *Rejection {
	return &Rejection{Code: c, Detail: fmt.Sprintf(format, args...)}
}

// AsRejection returns the Rejection in err's chain, if any.
func AsRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}

// Request is a CSR that passed policy: only these fields may reach a certificate.
type Request struct {
	CSR        *x509.CertificateRequest
	PublicKey  crypto.PublicKey
	RawSubject []byte
	Subject    pkix.Name
	DNSNames   []string
	Emails     []string
	URIs       []*url.URL
	UPNs       []string
	IPs        []net.IP
	// SANExtension is the subjectAltName extension to put in the certificate, re-encoded from the allowed
	// names (Go's template cannot express otherName UPNs). Nil when there are no names.
	SANExtension *pkix.Extension
	KeyUsage     x509.KeyUsage
	ExtKeyUsage  []x509.ExtKeyUsage
	// Validity is what the CSR's Microsoft validity attribute asked for, if anything.
	Validity          RequestedValidity
	ChallengePassword string
}

// Names returns every SAN as "type:value" for records and logs.
func (r *Request) Names() []string {
	var out []string
	for _, n := range r.DNSNames {
		out = append(out, "dns:"+n)
	}
	for _, n := range r.Emails {
		out = append(out, "email:"+n)
	}
	for _, n := range r.UPNs {
		out = append(out, "upn:"+n)
	}
	for _, u := range r.URIs {
		out = append(out, "uri:"+u.String())
	}
	for _, ip := range r.IPs {
		out = append(out, "ip:"+ip.String())
	}
	return out
}

// RequestedValidity is the CSR attribute 1.3.6.1.4.1.311.13.2.1 (ValidityPeriod / ValidityPeriodUnits).
type RequestedValidity struct {
	Unit  string // Minutes, Hours, Days, Weeks, Months or Years; "" when absent
	Units int
}

// NotAfter is from plus the requested period, or the zero time when nothing was requested.
func (v RequestedValidity) NotAfter(from time.Time) time.Time {
	switch v.Unit {
	case "Minutes":
		return from.Add(time.Duration(v.Units) * time.Minute)
	case "Hours":
		return from.Add(time.Duration(v.Units) * time.Hour)
	case "Days":
		return from.AddDate(0, 0, v.Units)
	case "Weeks":
		return from.AddDate(0, 0, 7*v.Units)
	case "Months":
		return from.AddDate(0, v.Units, 0)
	case "Years":
		return from.AddDate(v.Units, 0, 0)
	}
	return time.Time{}
}

var (
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtSKI              = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidUPN                 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidValidityAttr        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 13, 2, 1}
	oidChallengePassword   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidExtensionRequest    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}
	oidMSCertExtensions    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 14} // szOID_CERT_EXTENSIONS
	oidCommonName          = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidEmailAttribute      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

	ekuOIDs = map[string]x509.ExtKeyUsage{
		"1.3.6.1.5.5.7.3.1": x509.ExtKeyUsageServerAuth,
		"1.3.6.1.5.5.7.3.2": x509.ExtKeyUsageClientAuth,
		"1.3.6.1.5.5.7.3.4": x509.ExtKeyUsageEmailProtection,
		"1.3.6.1.5.5.7.3.5": x509.ExtKeyUsageIPSECEndSystem,
		"1.3.6.1.5.5.7.3.6": x509.ExtKeyUsageIPSECTunnel,
		"1.3.6.1.5.5.7.3.7": x509.ExtKeyUsageIPSECUser,
	}
)

// goodSignatureAlgorithms is explicit because Go's CheckSignature still accepts SHA-1.
var goodSignatureAlgorithms = map[x509.SignatureAlgorithm]bool{
	x509.SHA256WithRSA: true, x509.SHA384WithRSA: true, x509.SHA512WithRSA: true,
	x509.SHA256WithRSAPSS: true, x509.SHA384WithRSAPSS: true, x509.SHA512WithRSAPSS: true,
	x509.ECDSAWithSHA256: true, x509.ECDSAWithSHA384: true, x509.ECDSAWithSHA512: true,
}

// Limits that keep names sane (RFC 5280 upper bounds where it gives them).
const (
	maxSANs        = 32
	maxRDNs        = 16
	maxAttrLen     = 128
	maxCNLen       = 64 // ub-common-name
	maxDNSLen      = 253
	maxURILen      = 512
	maxEmailLen    = 254
	maxCSRBytes    = 16 << 10
	minPeriodUnits = 1
)

// ParseCSR parses DER and refuses trailing data (x509.ParseCertificateRequest tolerates none either, but says so
// less clearly) and oversized requests.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) > maxCSRBytes {
		return nil, reject(CodeMalformedCSR, "CSR is %d bytes, more than %d", len(der), maxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, reject(CodeMalformedCSR, "parsing CSR: %v", err)
	}
	return csr, nil
}

// Check applies the profile to a parsed CSR. The order follows Boulder's csr.VerifyCSR: key, signature algorithm,
// signature, then extensions, names and validity. The key comes first so a client with the wrong kind of key
// (Ed25519, RSA-1024 with SHA-1, RSA below 1024 bits, which crypto/rsa will not even verify) is told about its
// key rather than about a symptom of it. The error is always a *Rejection.
func Check(csr *x509.CertificateRequest, p *Profile) (*Request, error) {
	if err := CheckKey(csr.PublicKey, p); err != nil {
		return nil, err
	}
	if !goodSignatureAlgorithms[csr.SignatureAlgorithm] {
		return nil, reject(CodeBadSignatureAlg, "CSR signature algorithm %v is not allowed", csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, reject(CodeBadCSRSignature, "CSR signature does not verify")
	}
	req := &Request{CSR: csr, PublicKey: csr.PublicKey, RawSubject: csr.RawSubject, Subject: csr.Subject,
		KeyUsage: p.KeyUsage, ExtKeyUsage: append([]x509.ExtKeyUsage(nil), p.ExtKeyUsage...)}
	if _, isEC := csr.PublicKey.(*ecdsa.PublicKey); isEC {
		// RFC 5480 §3: an ECDSA key cannot do key transport.
		req.KeyUsage &^= x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
		if req.KeyUsage == 0 {
			// A certificate with no key usage carries no keyUsage extension, which relying parties read as every
			// usage: a key the profile allows only to decrypt would sign.
			return nil, reject(CodeKeyUsage, "profile %s allows only key transport, which an ECDSA key cannot do", p.Name)
		}
	}
	for _, ext := range csr.Extensions {
		if err := checkExtension(req, p, ext); err != nil {
			return nil, err
		}
	}
	if err := checkSubject(csr.RawSubject, p); err != nil {
		return nil, err
	}
	if len(csr.RawSubject) <= 2 && req.SANExtension == nil {
		return nil, reject(CodeSubject, "CSR has neither a subject nor subject alternative names")
	}
	attrs, err := parseAttributes(csr.RawTBSCertificateRequest)
	if err != nil {
		return nil, reject(CodeMalformedCSR, "parsing CSR attributes: %v", err)
	}
	// Each attribute may appear once: with two challengePassword attributes the static-challenge comparison and
	// Intune's validation could read different ones.
	var seenValidity, seenChallenge bool
	for _, a := range attrs {
		switch {
		case a.Type.Equal(oidValidityAttr) && seenValidity, a.Type.Equal(oidChallengePassword) && seenChallenge:
			return nil, reject(CodeMalformedCSR, "CSR repeats the attribute %s", a.Type)
		case a.Type.Equal(oidValidityAttr):
			seenValidity = true
			v, err := parseValidityAttribute(a.Values)
			if err != nil {
				return nil, reject(CodeValidity, "%v", err)
			}
			req.Validity = v
		case a.Type.Equal(oidChallengePassword):
			seenChallenge = true
			pw, err := parseChallenge(a.Values)
			if err != nil {
				return nil, reject(CodeChallenge, "challengePassword attribute is malformed")
			}
			req.ChallengePassword = pw
		}
	}
	return req, nil
}

// CheckKey enforces BR §6.1.5/§6.1.6-style key quality: RSA 2048/3072/4096 with e=65537 and no small factors,
// ECDSA P-256/P-384 only.
func CheckKey(pub crypto.PublicKey, p *Profile) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits != 2048 && bits != 3072 && bits != 4096 {
			return reject(CodeBadKey, "RSA key size %d is not one of 2048, 3072, 4096", bits)
		}
		if bits < p.MinRSABits {
			return reject(CodeBadKey, "RSA key size %d is below the profile minimum %d", bits, p.MinRSABits)
		}
		if k.E != 65537 {
			return reject(CodeBadKey, "RSA public exponent %d is not 65537", k.E)
		}
		if hasSmallFactor(k.N) {
			return reject(CodeBadKey, "RSA modulus has a small prime factor")
		}
		if fermatFactorable(k.N) {
			return reject(CodeBadKey, "RSA modulus factors by Fermat's method")
		}
		return nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			if p.AllowP256 {
				return nil
			}
		case elliptic.P384():
			if p.AllowP384 {
				return nil
			}
		}
		return reject(CodeBadKey, "ECDSA curve %s is not allowed", k.Curve.Params().Name)
	}
	return reject(CodeBadKey, "key type %T is not allowed", pub)
}

// smallPrimesProduct is the product of the primes below 752 (BR §6.1.6 "no factors smaller than 752").
var smallPrimesProduct = func() *big.Int {
	prod := big.NewInt(1)
	for n := int64(2); n < 752; n++ {
		if big.NewInt(n).ProbablyPrime(0) {
			prod.Mul(prod, big.NewInt(n))
		}
	}
	return prod
}()

func hasSmallFactor(n *big.Int) bool {
	return new(big.Int).GCD(nil, nil, n, smallPrimesProduct).Cmp(big.NewInt(1)) != 0
}

// fermatFactorable tries 100 rounds of Fermat's method, which factors moduli whose primes are too close
// (CVE-2022-26320), as Boulder does: round i asks whether b² = a_i² − n is a perfect square for a_i = ⌈√n⌉ + i.
// Only b²'s residue modulo 64·63·65·11 is carried from round to round, in machine words (b² grows by 2a_i + 1 per
// round); a round computes b² itself and its square root only when that residue is a quadratic residue modulo 64,
// 63, 65 and 11, which about one round in a hundred passes. So the check costs a few big-number operations
// instead of a division of a 2048-bit number per round.
func fermatFactorable(n *big.Int) bool {
	a := new(big.Int).Sqrt(n)
	if new(big.Int).Mul(a, a).Cmp(n) == 0 {
		return true
	}
	a.Add(a, bigOne)
	b2 := new(big.Int).Mul(a, a)
	b2.Sub(b2, n)
	step := new(big.Int).Lsh(a, 1) // (a+1)² − a² = 2a + 1
	step.Add(step, bigOne)
	r := new(big.Int).Mod(b2, residueModulus).Uint64()
	s := new(big.Int).Mod(step, residueModulus).Uint64()
	bi, b, sq := new(big.Int), new(big.Int), new(big.Int)
	for i := int64(0); i < fermatRounds; i++ {
		if maybeSquare(r) {
			// b²_i = b²_0 + i·step_0 + i(i−1): the sum of the i steps before this round, each 2 more than the last.
			bi.SetInt64(i)
			bi.Mul(bi, step)
			bi.Add(bi, b2)
			sq.SetInt64(i * (i - 1))
			bi.Add(bi, sq)
			b.Sqrt(bi)
			if sq.Mul(b, b).Cmp(bi) == 0 {
				return true
			}
		}
		r = (r + s) % residueWord
		s = (s + 2) % residueWord
	}
	return false
}

// fermatRounds is Boulder's number of Fermat rounds.
const fermatRounds = 100

// residueWord is residueModulus as a machine word.
const residueWord = 64 * 63 * 65 * 11

var (
	bigOne         = big.NewInt(1)
	residueModulus = big.NewInt(residueWord)
	squaresMod     = func() [4][]bool {
		var t [4][]bool
		for i, m := range []int{64, 63, 65, 11} {
			t[i] = make([]bool, m)
			for x := 0; x < m; x++ {
				t[i][x*x%m] = true
			}
		}
		return t
	}()
)

// maybeSquare is false when a number whose residue modulo residueWord is v cannot be a perfect square (a
// quadratic non-residue modulo 64, 63, 65 or 11).
func maybeSquare(v uint64) bool {
	return squaresMod[0][v%64] && squaresMod[1][v%63] && squaresMod[2][v%65] && squaresMod[3][v%11]
}

func checkExtension(req *Request, p *Profile, ext pkix.Extension) error {
	switch {
	case ext.Id.Equal(oidExtBasicConstraints):
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) != 0 {
			return reject(CodeMalformedCSR, "basicConstraints request is malformed")
		}
		if bc.IsCA || bc.MaxPathLen != -1 {
			return reject(CodeForbiddenExtension, "CSR asks for a CA certificate")
		}
	case ext.Id.Equal(oidExtKeyUsage):
		var bits asn1.BitString
		if rest, err := asn1.Unmarshal(ext.Value, &bits); err != nil || len(rest) != 0 {
			return reject(CodeMalformedCSR, "keyUsage request is malformed")
		}
		var ku x509.KeyUsage
		for i := 0; i < 9; i++ {
			if bits.At(i) != 0 {
				ku |= 1 << uint(i)
			}
		}
		if ku&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
			return reject(CodeForbiddenExtension, "CSR asks for keyCertSign or cRLSign")
		}
		if ku&^p.KeyUsage != 0 {
			return reject(CodeKeyUsage, "CSR asks for key usages outside profile %s", p.Name)
		}
		if ku != 0 {
			req.KeyUsage &= ku
			if req.KeyUsage == 0 {
				return reject(CodeKeyUsage, "CSR key usage leaves nothing the key may do")
			}
		}
	case ext.Id.Equal(oidExtExtKeyUsage):
		var oids []asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(ext.Value, &oids); err != nil || len(rest) != 0 {
			return reject(CodeMalformedCSR, "extendedKeyUsage request is malformed")
		}
		var narrowed []x509.ExtKeyUsage
		for _, o := range oids {
			eku, known := ekuOIDs[o.String()]
			if !known || !containsEKU(p.ExtKeyUsage, eku) {
				return reject(CodeExtKeyUsage, "CSR asks for extended key usage %s outside profile %s", o, p.Name)
			}
			if !containsEKU(narrowed, eku) {
				narrowed = append(narrowed, eku)
			}
		}
		if len(narrowed) > 0 {
			req.ExtKeyUsage = narrowed
		}
	case ext.Id.Equal(oidExtSAN):
		return checkSAN(req, p, ext.Value)
	case ext.Id.Equal(oidExtNameConstraints):
		return reject(CodeForbiddenExtension, "CSR asks for name constraints")
	case ext.Id.Equal(oidExtSKI):
		// Computed by the CA.
	default:
		if ext.Critical {
			return reject(CodeForbiddenExtension, "CSR has an unknown critical extension %s", ext.Id)
		}
		// Unknown non-critical extensions (Windows template names and the like) are ignored, never copied.
	}
	return nil
}

func containsEKU(list []x509.ExtKeyUsage, e x509.ExtKeyUsage) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// GeneralNames splits a subjectAltName extension value into its GeneralName elements (context-specific TLVs,
// undecoded), so that callers can compare names byte for byte: Go's parser drops otherName (UPN) and silently
// ignores types we must refuse.
func GeneralNames(der []byte) ([]asn1.RawValue, error) {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 || seq.Tag != asn1.TagSequence {
		return nil, reject(CodeMalformedCSR, "subjectAltName request is malformed")
	}
	var out []asn1.RawValue
	for rest := seq.Bytes; len(rest) > 0; {
		var gn asn1.RawValue
		var err error
		rest, err = asn1.Unmarshal(rest, &gn)
		if err != nil || gn.Class != asn1.ClassContextSpecific {
			return nil, reject(CodeMalformedCSR, "subjectAltName entry is malformed")
		}
		out = append(out, gn)
	}
	return out, nil
}

// checkSAN checks every requested GeneralName against the profile and re-encodes the accepted ones.
func checkSAN(req *Request, p *Profile, der []byte) error {
	names, err := GeneralNames(der)
	if err != nil {
		return err
	}
	var out []asn1.RawValue
	var ids identityURIs
	for _, gn := range names {
		// otherName, x400Address, directoryName and ediPartyName are constructed; the string and octet forms
		// are primitive. A constructed dNSName would otherwise be read as its inner TLV bytes.
		if constructed := gn.Tag == 0 || gn.Tag == 3 || gn.Tag == 4 || gn.Tag == 5; gn.IsCompound != constructed {
			return reject(CodeMalformedCSR, "subjectAltName entry %d has the wrong form", gn.Tag)
		}
		if len(out) >= maxSANs {
			return reject(CodeSAN, "more than %d subject alternative names", maxSANs)
		}
		switch gn.Tag {
		case 0: // otherName
			// OtherName ::= SEQUENCE { type-id OBJECT IDENTIFIER, value [0] EXPLICIT ANY }, read strictly: the
			// entry is copied into the certificate verbatim, so anything after the value (a second [0] holding
			// another UPN, which encoding/asn1 would skip) must refuse the request, not ride along unchecked.
			in := cryptobyte.String(gn.FullBytes)
			var on, value, upnBytes cryptobyte.String
			var typeID asn1.ObjectIdentifier
			if !in.ReadASN1(&on, cbasn1.Tag(0).ContextSpecific().Constructed()) || !in.Empty() ||
				!on.ReadASN1ObjectIdentifier(&typeID) ||
				!on.ReadASN1(&value, cbasn1.Tag(0).ContextSpecific().Constructed()) || !on.Empty() {
				return reject(CodeMalformedCSR, "otherName is malformed")
			}
			if !typeID.Equal(oidUPN) {
				return reject(CodeSAN, "otherName %s is not allowed", typeID)
			}
			// A UTF8String and nothing else, as Windows expects; any other string type is refused.
			if !value.ReadASN1(&upnBytes, cbasn1.UTF8String) || !value.Empty() || !utf8.Valid(upnBytes) {
				return reject(CodeMalformedCSR, "UPN is not a UTF8String")
			}
			upn := string(upnBytes)
			if !p.Allows(SANUPN) {
				return reject(CodeSAN, "UPN names are not allowed by profile %s", p.Name)
			}
			if !validEmailLike(upn) {
				return reject(CodeSAN, "UPN %+q is %s", clip(upn), emailFault(upn))
			}
			if !p.AllowsUPN(upn) {
				return reject(CodeSAN, "UPN %q is not allowed by profile %s", clip(upn), p.Name)
			}
			req.UPNs = append(req.UPNs, upn)
		case 1: // rfc822Name
			if !p.Allows(SANEmail) {
				return reject(CodeSAN, "email names are not allowed by profile %s", p.Name)
			}
			e := string(gn.Bytes)
			if !validEmailLike(e) {
				return reject(CodeSAN, "email %+q is %s", clip(e), emailFault(e))
			}
			if !p.AllowsEmail(e) {
				return reject(CodeSAN, "email %q is not allowed by profile %s", clip(e), p.Name)
			}
			req.Emails = append(req.Emails, e)
		case 2: // dNSName
			if !p.Allows(SANDNS) {
				return reject(CodeSAN, "DNS names are not allowed by profile %s", p.Name)
			}
			d := string(gn.Bytes)
			if !validDNSName(d) || numericHost(d) {
				return reject(CodeSAN, "DNS name %q is malformed or an IP address", clip(d))
			}
			if !p.AllowsDNS(d) {
				return reject(CodeSAN, "DNS name %q is not allowed by profile %s", clip(d), p.Name)
			}
			req.DNSNames = append(req.DNSNames, d)
		case 6: // uniformResourceIdentifier
			s := string(gn.Bytes)
			u, err := url.Parse(s)
			// A trailing "#" is an empty fragment, which url.URL neither keeps nor prints: what the checks below
			// see must be the name relying parties read.
			if err != nil || u.Scheme == "" || len(s) > maxURILen || hasControl(s) || strings.HasSuffix(s, "#") {
				return reject(CodeSAN, "URI %q is malformed", clip(s))
			}
			// Identity URIs are governed by the profile's identity_uris opt-in alone, ordinary URIs by uri=.
			if !p.AllowsURI(u) {
				if k := IdentityURIKind(u); k != 0 {
					return reject(CodeSAN, "%s URIs are not allowed by profile %s", identityKindName(k), p.Name)
				}
				if !p.Allows(SANURI) {
					return reject(CodeSAN, "URI names are not allowed by profile %s", p.Name)
				}
				if hasAt(u) {
					return reject(CodeSAN, "URI %q is not allowed by profile %s: it has an \"@\" (or %%40), after which "+
						"some parsers read another host (curl's CVE-2016-8624), so no host pattern allows it", clip(s), p.Name)
				}
				return reject(CodeSAN, "URI %q is not allowed by profile %s", clip(s), p.Name)
			}
			if err := ids.add(u); err != nil {
				return err
			}
			req.URIs = append(req.URIs, u)
		case 7: // iPAddress
			if !p.Allows(SANIP) {
				return reject(CodeSAN, "IP addresses are not allowed by profile %s", p.Name)
			}
			if len(gn.Bytes) != 4 && len(gn.Bytes) != 16 {
				return reject(CodeSAN, "IP address is malformed")
			}
			// An IPv4 address in the 16 bytes of its IPv4-mapped form (::ffff:a.b.c.d) is the IPv4 address to Go
			// (net.IPNet.Contains, the allow-list, VerifyHostname, the name constraints lint) and an IPv6 address
			// to OpenSSL and others that compare the address bytes with their length: the policy would judge one
			// name and relying parties read another, and a CA constrained to an IPv4 range would issue a
			// certificate no verifier accepts.
			if len(gn.Bytes) == net.IPv6len && net.IP(gn.Bytes).To4() != nil {
				return reject(CodeSAN, "IP address %s is an IPv4 address in IPv6 form: request it as a 4-byte IPv4 address",
					net.IP(gn.Bytes))
			}
			if !p.AllowsIP(net.IP(gn.Bytes)) {
				return reject(CodeSAN, "IP address %s is not allowed by profile %s", net.IP(gn.Bytes), p.Name)
			}
			req.IPs = append(req.IPs, net.IP(gn.Bytes))
		default:
			return reject(CodeSAN, "subject alternative name type %d is not allowed", gn.Tag)
		}
		out = append(out, gn)
	}
	if len(out) == 0 {
		return reject(CodeSAN, "subjectAltName request is empty")
	}
	// Re-encode only what was accepted, in the order requested (identical to the request here, since anything
	// else was refused); criticality is set by the issuer from the subject.
	val, err := asn1.Marshal(out)
	if err != nil {
		return reject(CodeMalformedCSR, "re-encoding subjectAltName: %v", err)
	}
	req.SANExtension = &pkix.Extension{Id: oidExtSAN, Value: val}
	return nil
}

// identityURIs are the identity URIs of one certificate, so that it names at most one account and one device: a
// relying party that maps certificates by these URIs (AD strong mapping by the SID URI, Intune and network access
// servers by the device ID) reads one of them, and which one differs from reader to reader. Intune, which
// validates every SAN of its requests, would not ask for a second; this limit holds wherever Intune does not
// look (a static endpoint or a profile that opts in with identity_uris=, /api/csr).
type identityURIs struct {
	sid, intuneDeviceID, nasDeviceID *url.URL
}

// add counts u, refusing a second SID URI, a second IntuneDeviceId URI, a second ID:…:GUID: URI (or one with two
// "GUID:" marks), and device URIs of the two forms that name different devices. The two device forms are counted
// apart because a certificate may carry one device's ID in both, IntuneDeviceId:// for Intune and
// ID:Microsoft Endpoint Manager:GUID:<id> for a network access server (Cisco ISE).
func (c *identityURIs) add(u *url.URL) error {
	var slot **url.URL
	var form string
	switch IdentityURIKind(u) {
	case IdentitySID:
		slot, form = &c.sid, "SID (tag:microsoft.com)"
		// One spelling, the one Entra and AD strong mapping read: a reader that finds the SID in any other (a
		// path, a query, another date or authority) may read it where this CA checked nothing.
		if SIDOf(u) == "" {
			return reject(CodeSAN, "SID URI %q is not %s<SID> with nothing after the SID", clip(u.String()), sidURIPrefix)
		}
	case IdentityIntuneDeviceID:
		if strings.EqualFold(u.Scheme, "intunedeviceid") {
			slot, form = &c.intuneDeviceID, "IntuneDeviceId"
		} else {
			slot, form = &c.nasDeviceID, "device ID (ID:…:GUID:)"
			// Two marks name two devices, and readers differ on which they take (DeviceIDOf the last, a text
			// search from the start the first, a URI parser none in the fragment): one mark, one device.
			if strings.Count(strings.ToLower(afterScheme(u)), deviceIDMark) > 1 {
				return reject(CodeSAN, "device ID URI %q has more than one \"GUID:\": readers differ on which device it names", clip(u.String()))
			}
		}
		if DeviceIDOf(u) == "" {
			return reject(CodeSAN, "device ID URI %q does not name one device: it must be IntuneDeviceId://<GUID> or "+
				"ID:<product>:GUID:<GUID>, with nothing after the GUID (no user info, port, path, query or fragment)", clip(u.String()))
		}
	default:
		return nil
	}
	if *slot != nil {
		return reject(CodeSAN, "more than one %s URI: a certificate names at most one account and one device", form)
	}
	*slot = u
	if c.intuneDeviceID != nil && c.nasDeviceID != nil {
		if !SameName(DeviceIDOf(c.intuneDeviceID), DeviceIDOf(c.nasDeviceID)) {
			return reject(CodeSAN, "the IntuneDeviceId URI and the ID:…:GUID: URI name different devices")
		}
	}
	return nil
}

// DeviceIDOf is the device ID a device identity URI names, when it names one GUID and nothing else: the host of
// IntuneDeviceId://<id> as Intune writes it, or what follows the last "GUID:" of ID:<product>:GUID:<id>, in its
// opaque part, path, query or fragment (percent-decoded, as IdentityURIKind reads it). "" when there is none, and
// when anything rides along: user info, a port, a path, a query or a fragment of an IntuneDeviceId URI, or its
// opaque form IntuneDeviceId:<id> ("IntuneDeviceId://<id>?x" is <id> to url.URL and "<id>?x" to a reader that
// takes the text after "://", which finds nothing in the opaque form), or text after the GUID of an ID: URI (a "?x"
// or "#frag" it would otherwise keep). The ID recorded for a certificate (revocation by device, the console's
// search) must be the one relying parties read.
func DeviceIDOf(u *url.URL) string {
	var id string
	if strings.EqualFold(u.Scheme, "intunedeviceid") {
		if u.Opaque != "" || u.User != nil || u.Path != "" || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery ||
			u.Fragment != "" {
			return ""
		}
		id = u.Host
	} else {
		text := afterScheme(u)
		for i := len(text) - len(deviceIDMark); i >= 0; i-- {
			if SameName(text[i:i+len(deviceIDMark)], deviceIDMark) {
				id = text[i+len(deviceIDMark):]
				break
			}
		}
	}
	// The GUID ends the URI as written, too: "GUID:%35f2c…" decodes to a GUID that a reader taking the text as it
	// is does not see.
	if !entra.IsGUID(id) || !strings.HasSuffix(strings.ToLower(u.String()), strings.ToLower(id)) {
		return ""
	}
	return id
}

// subjectAttribute is how the CA treats one DN attribute type it copies.
type subjectAttribute struct {
	limit int // the longest value, in characters
	// identity names the attributes relying parties map to an identity (TLS clients the CN to a host, RADIUS
	// servers and pam_pkcs11 the CN, UID or serialNumber to a user, directory mappers O, OU and DC): a value in
	// them that looks like a name is held to the profile's allow-lists (checkNameLike). Empty for free text.
	identity string
}

// allowedSubjectAttributes are the DN attribute types the CA copies; anything else is refused.
var allowedSubjectAttributes = map[string]subjectAttribute{
	"2.5.4.3":                    {maxCNLen, "common name"},
	"2.5.4.6":                    {2, ""}, // C
	"2.5.4.7":                    {maxAttrLen, ""},
	"2.5.4.8":                    {maxAttrLen, ""},
	"2.5.4.9":                    {maxAttrLen, ""},
	"2.5.4.10":                   {64, "organization"},
	"2.5.4.11":                   {64, "organizational unit"},
	"2.5.4.12":                   {64, ""},
	"2.5.4.4":                    {64, ""},
	"2.5.4.42":                   {64, ""},
	"2.5.4.5":                    {64, "serial number attribute"},
	"2.5.4.17":                   {40, ""},
	"1.2.840.113549.1.9.1":       {maxEmailLen, ""}, // emailAddress: checked as an e-mail name below
	"0.9.2342.19200300.100.1.25": {63, "domain component"},
	"0.9.2342.19200300.100.1.1":  {maxAttrLen, "user ID"},
}

// checkSubject applies the attribute and length limits, and holds every attribute that names someone (the
// identity attributes, the emailAddress attribute) to the profile's name allow-lists.
func checkSubject(raw []byte, p *Profile) error {
	values, ok := nameValues(raw)
	if !ok {
		return reject(CodeSubject, "subject is malformed")
	}
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) != 0 {
		return reject(CodeSubject, "subject is malformed")
	}
	if len(rdns) > maxRDNs {
		return reject(CodeSubject, "subject has %d RDNs, more than %d", len(rdns), maxRDNs)
	}
	n := 0
	for _, rdn := range rdns {
		n += len(rdn)
	}
	if n != len(values) {
		return reject(CodeSubject, "subject is malformed")
	}
	var dcs []string
	i := 0
	for _, rdn := range rdns {
		for _, atv := range rdn {
			rv := values[i]
			i++
			attr, ok := allowedSubjectAttributes[atv.Type.String()]
			if !ok {
				return reject(CodeSubject, "subject attribute %s is not allowed", atv.Type)
			}
			// The policy judges the string a relying party reads, which is only the string this CA reads (Go's
			// decoding, what every door checks) when the string type decodes one way for every reader.
			s, err := subjectString(rv.tag, rv.value)
			if err != nil {
				return reject(CodeSubject, "subject attribute %s %v", atv.Type, err)
			}
			if goRead, _ := atv.Value.(string); goRead != s {
				return reject(CodeSubject, "subject attribute %s does not decode the same way for every reader", atv.Type)
			}
			if s == "" || len([]rune(s)) > attr.limit || hasControl(s) {
				return reject(CodeSubject, "subject attribute %s is empty, too long or has control characters", atv.Type)
			}
			if r, ok := padding(s); ok {
				return reject(CodeSubject, "subject attribute %s begins or ends with white space (%U), which readers that "+
					"trim values drop, so they would read another value than the one checked", atv.Type, r)
			}
			if hasBidiControl(s) {
				return reject(CodeSubject, "subject attribute %s has a bidirectional embedding, override or isolate "+
					"character, which makes it display as another text", atv.Type)
			}
			if frag, ok := injectedAttribute(s); ok {
				return reject(CodeSubject, "subject attribute %s value %q has %q, a DN separator followed by an attribute "+
					"type and \"=\", which readers that match the subject as one string (/C=…/CN=…, CN=…,O=…) take for "+
					"another attribute", atv.Type, clip(s), frag)
			}
			if frag, ok := leadingAttribute(s); ok {
				return reject(CodeSubject, "subject attribute %s value %q begins with %q, an attribute type and \"=\", which "+
					"readers that match the subject as one string (/O=CN=…, CN=CN=…) take for another attribute", atv.Type,
					clip(s), frag)
			}
			if hexStringValue(s) {
				return reject(CodeSubject, "subject attribute %s value %q begins with \"#\" and hex digits, which RFC 4514 "+
					"readers that lose the printer's escape decode as a BER-encoded value, another value than the one "+
					"checked", atv.Type, clip(s))
			}
			if r, ok := lineSeparator(s); ok {
				return reject(CodeSubject, "subject attribute %s has a line separator (%U), which readers that split text "+
					"into lines take for the end of the value", atv.Type, r)
			}
			switch {
			case attr.identity != "":
				if err := checkNameLike(p, attr.identity, s); err != nil {
					return err
				}
				if atv.Type.Equal(oidCommonName) && p.IdentityURIs&IdentityDeviceCN == 0 && deviceIDShaped(s) {
					return reject(CodeSubject, "common name %q is shaped like or names an Entra or Intune device ID, which profile %s "+
						"does not allow (identity_uris=devicecn)", clip(s), p.Name)
				}
				if atv.Type.Equal(oidDomainComponent) {
					dcs = append(dcs, s)
				}
			case atv.Type.Equal(oidEmailAttribute):
				if !validEmailLike(s) || !(p.AllowsEmail(s) || p.AllowsUPN(s)) {
					return reject(CodeSubject, "subject e-mail address %q is not allowed by profile %s", clip(s), p.Name)
				}
			}
		}
	}
	if len(dcs) > 1 {
		// Relying parties (Active Directory first) read the domain components together as one domain, the last
		// one (in DER order) leftmost: DC=com, DC=evil names evil.com though neither label is a name alone. It is
		// the domain of the hosts the profile allows, so *.corp.example.com allows DC=corp, DC=example, DC=com.
		slices.Reverse(dcs)
		if d := strings.Join(dcs, "."); !validDNSName(d) || numericHost(d) || !p.AllowsDomain(d) {
			return reject(CodeSubject, "domain components name %q, a domain profile %s does not allow", clip(d), p.Name)
		}
	}
	return nil
}

var oidDomainComponent = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}

// nameValue is one attribute value of a Name as encoded: its universal tag and content octets.
type nameValue struct {
	tag   cbasn1.Tag
	value []byte
}

// nameValues returns the attribute values of raw in order, and whether raw is a Name exactly as RFC 5280
// §4.1.2.4 shapes it, in DER: a SEQUENCE of non-empty SETs of AttributeTypeAndValue, each exactly one type and
// one value, with nothing after any of them. The certificate carries the subject byte for byte, while
// encoding/asn1 and crypto/x509 read the first value of an AttributeTypeAndValue and ignore anything after it; a
// second value would ride into the certificate unchecked.
func nameValues(raw []byte) ([]nameValue, bool) {
	in := cryptobyte.String(raw)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, false
	}
	var out []nameValue
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) || set.Empty() {
			return nil, false
		}
		for !set.Empty() {
			var atv, value cryptobyte.String
			var typ asn1.ObjectIdentifier
			var tag cbasn1.Tag
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&typ) ||
				!atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
				return nil, false
			}
			out = append(out, nameValue{tag, value})
		}
	}
	return out, true
}

// ASN.1 universal string tags encoding/asn1 does not name.
const (
	tagVideotexString  = 21
	tagGraphicString   = 25
	tagVisibleString   = 26
	tagGeneralString   = 27
	tagUniversalString = 28
)

// subjectString decodes a subject attribute value of one of the string types every reader decodes the same way,
// and says why any other is refused (the error completes "subject attribute <OID> …"). The subject is copied
// into the certificate byte for byte, so a string type that Go and a relying party decode differently would have
// the policy judge one name and the relying party read another: Go reads a TeletexString as Latin-1, Windows
// CryptoAPI as UTF-8 first, so the UTF-8 bytes of a fullwidth "ＡＤＭＩＮ＠ＣＯＮＴＯＳＯ｡ＣＯＭ" are harmless
// mojibake to the policy and that fullwidth name to Windows.
func subjectString(tag cbasn1.Tag, b []byte) (string, error) {
	switch int(tag) {
	case asn1.TagUTF8String:
		if !utf8.Valid(b) {
			return "", fmt.Errorf("is not valid UTF-8")
		}
		return string(b), nil
	case asn1.TagPrintableString:
		for _, c := range b {
			if !printableChar(c) {
				return "", fmt.Errorf("is a PrintableString with a character outside its set")
			}
		}
		return string(b), nil
	case asn1.TagIA5String:
		for _, c := range b {
			if c >= utf8.RuneSelf {
				return "", fmt.Errorf("is an IA5String with a byte outside ASCII")
			}
		}
		return string(b), nil
	case asn1.TagNumericString:
		for _, c := range b {
			if !(c >= '0' && c <= '9' || c == ' ') {
				return "", fmt.Errorf("is a NumericString with a character other than a digit or a space")
			}
		}
		return string(b), nil
	case asn1.TagBMPString:
		// UCS-2 big-endian, which Go and Windows read alike, except that Go drops a trailing NUL (00 00) the
		// certificate keeps; Go refuses surrogates and the noncharacters itself.
		if len(b)%2 != 0 {
			return "", fmt.Errorf("is a BMPString of odd length")
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			c := uint16(b[2*i])<<8 | uint16(b[2*i+1])
			switch {
			case c == 0:
				return "", fmt.Errorf("is a BMPString with a NUL character, which some readers take for its end")
			case c >= 0xD800 && c <= 0xDFFF, c == 0xFFFE, c == 0xFFFF, c >= 0xFDD0 && c <= 0xFDEF:
				return "", fmt.Errorf("is a BMPString with a surrogate or a noncharacter")
			}
			u[i] = c
		}
		return string(utf16.Decode(u)), nil
	case asn1.TagT61String:
		// ASCII reads the same either way (OpenSSL's "nombstr" string mask writes TeletexString for any value with
		// a character outside PrintableString, such as "_" or "@"); only the 8-bit bytes are read differently.
		for _, c := range b {
			if c >= utf8.RuneSelf {
				return "", fmt.Errorf("is a TeletexString with 8-bit characters, which Go reads as Latin-1 and " +
					"Windows as UTF-8, so they read different names: encode it as a UTF8String")
			}
		}
		return string(b), nil
	case tagVideotexString, tagGraphicString, tagGeneralString, tagUniversalString:
		return "", fmt.Errorf("is a %s, which readers decode differently: encode it as a UTF8String or a "+
			"PrintableString", stringTypeName(tag))
	case tagVisibleString:
		// ASCII, and safe for relying parties, but Go (this CA's own checks and its doors') does not decode it.
		return "", fmt.Errorf("is a VisibleString, which Go does not decode: encode it as a UTF8String or a " +
			"PrintableString")
	}
	return "", fmt.Errorf("is not a string")
}

func stringTypeName(tag cbasn1.Tag) string {
	switch int(tag) {
	case tagVideotexString:
		return "VideotexString"
	case tagGraphicString:
		return "GraphicString"
	case tagGeneralString:
		return "GeneralString"
	case tagUniversalString:
		return "UniversalString"
	}
	return fmt.Sprintf("string type %d", tag)
}

// printableChar is the PrintableString character set as Go reads it: X.680's, and '*' and '&', which Go accepts
// because certificates in the wild carry them.
func printableChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c >= '\'' && c <= ')' || c >= '+' && c <= '/' || c == ' ' || c == ':' || c == '=' || c == '?' ||
		c == '*' || c == '&'
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

// parseAttributes reads the CSR attribute set, which x509.CertificateRequest exposes only for the extension request.
func parseAttributes(tbs []byte) ([]attribute, error) {
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0,optional,set"`
	}
	if _, err := asn1.Unmarshal(tbs, &info); err != nil {
		return nil, err
	}
	var out []attribute
	var extensionRequest, msExtensions []byte
	extensionRequests, msExtensionAttrs := 0, 0
	for _, raw := range info.Attributes {
		var a attribute
		if rest, err := asn1.Unmarshal(raw.FullBytes, &a); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("attribute is malformed")
		}
		switch {
		case a.Type.Equal(oidExtensionRequest):
			// crypto/x509 reads the first value of every extensionRequest and merges them; Intune validates the
			// request bytes with its own parser. One attribute with one value leaves both reading the same
			// extensions, as for challengePassword.
			if extensionRequests++; extensionRequests > 1 || len(a.Values) != 1 {
				return nil, fmt.Errorf("the extensionRequest attribute must appear once, with one value")
			}
			extensionRequest = a.Values[0].FullBytes
		case a.Type.Equal(oidMSCertExtensions):
			// Windows reads extensions from szOID_CERT_EXTENSIONS as from extensionRequest; crypto/x509 and this
			// policy do not. A validator that read the names there (Intune's, say) could approve one set while
			// the certificate got the extensionRequest's.
			if msExtensionAttrs++; msExtensionAttrs > 1 || len(a.Values) != 1 {
				return nil, fmt.Errorf("the attribute %s (szOID_CERT_EXTENSIONS) must appear once, with one value", a.Type)
			}
			msExtensions = a.Values[0].FullBytes
		default:
			out = append(out, a)
		}
	}
	// Alone it names no extension this CA copies (legacy Windows clients sent template information there), so it
	// is only refused beside an extensionRequest that says something else.
	if msExtensionAttrs > 0 && extensionRequests > 0 && !bytes.Equal(msExtensions, extensionRequest) {
		return nil, fmt.Errorf("the attribute %s (szOID_CERT_EXTENSIONS) must carry exactly the extensionRequest "+
			"value, so that every reader sees the same extensions", oidMSCertExtensions)
	}
	return out, nil
}

func parseChallenge(values []asn1.RawValue) (string, error) {
	if len(values) != 1 {
		return "", fmt.Errorf("want one value")
	}
	v := values[0]
	switch v.Tag {
	case asn1.TagPrintableString, asn1.TagUTF8String, asn1.TagIA5String, 20: // 20 = TeletexString, used by some clients
		return string(v.Bytes), nil
	case asn1.TagBMPString:
		return decodeBMP(v.Bytes)
	}
	return "", fmt.Errorf("unsupported string type %d", v.Tag)
}

// parseValidityAttribute reads EnrollmentNameValuePair values (name, value as BMPString) for
// ValidityPeriod and ValidityPeriodUnits, accepting either one pair per value or a sequence of pairs.
func parseValidityAttribute(values []asn1.RawValue) (RequestedValidity, error) {
	pairs := map[string]string{}
	var addPair func(raw []byte, depth int) error
	addPair = func(raw []byte, depth int) error {
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(raw, &seq); err != nil || len(rest) != 0 || seq.Tag != asn1.TagSequence {
			return fmt.Errorf("validity attribute is malformed")
		}
		var first asn1.RawValue
		rest, err := asn1.Unmarshal(seq.Bytes, &first)
		if err != nil {
			return fmt.Errorf("validity attribute is malformed")
		}
		if first.Tag == asn1.TagSequence && depth == 0 {
			for b := seq.Bytes; len(b) > 0; {
				var el asn1.RawValue
				if b, err = asn1.Unmarshal(b, &el); err != nil {
					return fmt.Errorf("validity attribute is malformed")
				}
				if err := addPair(el.FullBytes, 1); err != nil {
					return err
				}
			}
			return nil
		}
		var second asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &second); err != nil || len(rest) != 0 {
			return fmt.Errorf("validity attribute pair is malformed")
		}
		name, err1 := decodeString(first)
		value, err2 := decodeString(second)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("validity attribute pair is not two strings")
		}
		pairs[name] = value
		return nil
	}
	for _, v := range values {
		if err := addPair(v.FullBytes, 0); err != nil {
			return RequestedValidity{}, err
		}
	}
	unit, hasUnit := pairs["ValidityPeriod"]
	n, hasN := pairs["ValidityPeriodUnits"]
	if !hasUnit && !hasN {
		return RequestedValidity{}, nil
	}
	if !hasUnit || !hasN {
		return RequestedValidity{}, fmt.Errorf("validity attribute needs both ValidityPeriod and ValidityPeriodUnits")
	}
	switch unit {
	case "Minutes", "Hours", "Days", "Weeks", "Months", "Years":
	default:
		return RequestedValidity{}, fmt.Errorf("validity period unit %q is not supported", clip(unit))
	}
	var units int
	if _, err := fmt.Sscanf(n, "%d", &units); err != nil || units < minPeriodUnits || units > 1_000_000 ||
		fmt.Sprint(units) != n {
		return RequestedValidity{}, fmt.Errorf("validity period units %q is not a positive integer", clip(n))
	}
	return RequestedValidity{Unit: unit, Units: units}, nil
}

func decodeString(v asn1.RawValue) (string, error) {
	switch v.Tag {
	case asn1.TagBMPString:
		return decodeBMP(v.Bytes)
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String:
		return string(v.Bytes), nil
	}
	return "", fmt.Errorf("unsupported string type")
}

func decodeBMP(b []byte) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("odd BMPString length")
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return string(utf16.Decode(u)), nil
}

func validDNSName(d string) bool {
	if d == "" || len(d) > maxDNSLen || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validEmailLike holds a UPN or e-mail name to its shape; a name written with look-alike or invisible characters
// (one that lookalikeFold changes: "\u212Aim@…" is Kim@…, "adm\u2024in@…" adm.in@…) is refused, in a SAN as in
// the subject, and so is one with white space of any kind (isPadding) in it: a reader that trims or splits it would
// find another name.
func validEmailLike(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && len(s) <= maxEmailLen && !hasControl(s) && !strings.ContainsAny(s, "<>\"") &&
		!strings.ContainsFunc(s, isPadding) && validDNSName(domain) && lookalikeFold(s) == s
}

// emailFault says why validEmailLike refused s.
func emailFault(s string) string {
	if f := lookalikeFold(s); f != s {
		return fmt.Sprintf("written in look-alike or invisible characters (it reads as %q)", clip(f))
	}
	return "malformed"
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return true
		}
	}
	return false
}

// deviceIDShaped reports whether v reads as a GUID (guidSpelling: in any spelling a common parser reads, with
// spaces around it), the shape of an Entra or Intune device ID, or names one in the ID:<product>:GUID:<id> form. A common
// name of that shape names a device to the relying parties that map certificates to devices (Intune SCEP profiles
// write CN={{AAD_Device_ID}}, and network access servers look the CN up in Entra or Intune; self-service /api/csr
// reads it so too), so only a door that authorizes device identities may issue it: Intune, which vouches for the
// device, a profile that opts in like for IntuneDeviceId:// URIs, or self-service once Graph says the caller owns
// the device.
//
// The ID form counts in a common name as much as in a URI: readers take the device ID from whatever follows the
// last "GUID:" of the CN as well as of the SAN URIs (authentik's Intune endpoint stage reads both alike and looks
// the rest up as an Intune or Entra device ID), so "ID:Intune:GUID:<id>" as a CN is that device. (The full
// "ID:Microsoft Endpoint Manager:GUID:<id>" is longer than a CN may be.)
func deviceIDShaped(v string) bool {
	v = lookalikeFold(v)
	for i := len(v) - len(deviceIDMark); i >= 0; i-- {
		if SameName(v[i:i+len(deviceIDMark)], deviceIDMark) {
			v = v[i+len(deviceIDMark):]
			break
		}
	}
	return guidSpelling(strings.TrimSpace(v))
}

// guidSpelling reports whether v is a GUID as the parsers relying parties use read one, not only in its hyphenated
// form: Go's uuid.Parse takes 32 hex digits without hyphens, urn:uuid: before it, and any one character on either
// side of the hyphenated form (meant for braces); .NET's Guid.Parse takes the 32 digits, braces and parentheses;
// Python's UUID drops urn: and uuid:, the braces at the ends and every hyphen wherever it is. A device ID in any of
// them names the device to a reader that parses it so.
func guidSpelling(v string) bool {
	if entra.IsGUID(v) || len(v) == 38 && entra.IsGUID(v[1:37]) {
		return true
	}
	if len(v) >= 9 && strings.EqualFold(v[:9], "urn:uuid:") {
		v = v[9:]
	} else if len(v) >= 5 && strings.EqualFold(v[:5], "uuid:") {
		v = v[5:]
	}
	if len(v) >= 2 && (v[0] == '{' && v[len(v)-1] == '}' || v[0] == '(' && v[len(v)-1] == ')') {
		v = v[1 : len(v)-1]
	}
	v = strings.ReplaceAll(v, "-", "")
	if len(v) != 32 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// hasBidiControl reports whether s holds one of Unicode's explicit directional formatting characters (UAX #9 §2:
// embeddings U+202A/B, pop U+202C, overrides U+202D/E, isolates U+2066–U+2069). They reorder what is displayed,
// so "\u202E1000-ecived" shows as "device-0001" in a certificate viewer or a log (Trojan Source, CVE-2021-42574),
// and a name never needs them: the bidi algorithm lays right-to-left text out without them. The implicit marks
// (LRM, RLM, ALM), which right-to-left text may carry, are left alone.
func hasBidiControl(s string) bool {
	for _, r := range s {
		if r >= '\u202A' && r <= '\u202E' || r >= '\u2066' && r <= '\u2069' {
			return true
		}
	}
	return false
}

// injectedAttribute finds in v what a reader of the subject as one string would take for the start of another
// attribute: a DN separator ("/", ",", "+" or ";"), then an attribute type (a keyword such as CN, OU or
// emailAddress, or a dotted OID such as 2.5.4.3 or OID.2.5.4.3: ASCII letters, digits, "-" and ".", beginning with
// a letter or a digit), then "=", with white space allowed around the type; in v or in its compatibility form
// (lookalikeFold: "／ＣＮ＝"). Relying parties match the subject with a pattern on OpenSSL's one-line form
// (X509_NAME_oneline: FreeRADIUS's TLS-Client-Cert-Subject, nginx's $ssl_client_s_dn_legacy, Apache's legacy DN
// format) or on the RFC 2253/4514 form (nginx's $ssl_client_s_dn, Apache's SSL_CLIENT_S_DN). wolfSSL's one-line
// form does not escape a "/" in a value at all, and the backslash OpenSSL 3 ("\/") and RFC 4514 ("\,") put before
// one is lost on such a pattern: CN="dev/CN=evil.com" reads as CN=evil.com to "/CN=([^/]+)$", and
// O="x,CN=evil.com" to a search for the first "CN=". Ordinary text keeps its separators ("Smith, John",
// "R&D/Lab 3", "a+b"): only a separator before a type and "=" is refused. It returns the fragment from the
// separator to the "=".
func injectedAttribute(v string) (string, bool) {
	for _, s := range []string{v, lookalikeFold(v)} {
		for i := 0; i < len(s); i++ {
			if !strings.ContainsRune("/,+;", rune(s[i])) {
				continue
			}
			rest := strings.TrimLeftFunc(s[i+1:], isPadding)
			n := attributeTypeLen(rest)
			if n == 0 {
				continue
			}
			after := strings.TrimLeftFunc(rest[n:], isPadding)
			if strings.HasPrefix(after, "=") {
				return s[i : len(s)-len(after)+1], true
			}
		}
	}
	return "", false
}

// leadingAttribute finds an attribute type and "=" at the start of v (or of its compatibility form), with white
// space allowed around the type: the same type injectedAttribute looks for after a separator. Printed, the value
// follows its own type and "=" (/O=CN=evil.com, CN=CN=evil.com), which is a separator to the readers that split
// the subject on "=" or search it for "CN=": a first-match "CN=([^/]+)" reads evil.com from the one-line form of
// O=CN=evil.com, and the last part of CN=CN=evil.com split on "=" is evil.com. No printer escapes the "=" (RFC
// 4514 does not ask it), so the refusal cannot be narrowed to known keywords without guessing which types a
// relying party's pattern names: OpenSSL alone knows over a thousand. So "x=1" and "key=value pairs" are refused
// as "CN=evil.com" is, while a value whose first word is not a type ("50/50 = even": digits without a dot) or is
// not followed by "=" ("Q&A = help") is text. It returns the type and "=".
func leadingAttribute(v string) (string, bool) {
	for _, s := range []string{v, lookalikeFold(v)} {
		rest := strings.TrimLeftFunc(s, isPadding)
		if n := attributeTypeLen(rest); n > 0 {
			if after := strings.TrimLeftFunc(rest[n:], isPadding); strings.HasPrefix(after, "=") {
				return s[:len(s)-len(after)+1], true
			}
		}
	}
	return "", false
}

// attributeTypeLen is the length of the attribute type s begins with, or 0: a keyword beginning with a letter, or a
// dotted OID (2.5.4.3, OID.2.5.4.3). A run of digits without a dot is a number, not a type, so that "50/50 = even"
// stays text.
func attributeTypeLen(s string) int {
	n := 0
	for n < len(s) && attributeTypeChar(s[n]) {
		n++
	}
	if t := s[:n]; n == 0 || t[0] == '-' || t[0] == '.' || t[0] <= '9' && !strings.Contains(t, ".") {
		return 0
	}
	return n
}

// hexStringValue reports whether v (or its compatibility form: "＃" is "#") begins the way RFC 4514 §2.4 writes a
// value as the hex of its BER encoding: "#" and one or more pairs of hex digits, up to the end of the value or a
// character other than a letter (white space or punctuation, where a lenient parser stops). Printers escape a
// leading "#" ("\#"), but a pattern or a string handler that loses the backslash hands "#0c0865766963…" to an RFC
// 4514 parser (go-ldap's ParseDN hex-decodes it and reads the BER string inside), which decodes it to a value the
// policy never saw. "#1 fan", "#define" and "#Ops" are text: an odd number of digits, or a
// letter after the pairs, is no hexstring.
func hexStringValue(v string) bool {
	for _, s := range []string{v, lookalikeFold(v)} {
		rest, ok := strings.CutPrefix(s, "#")
		if !ok {
			continue
		}
		n := 0
		for n < len(rest) && isHexDigit(rest[n]) {
			n++
		}
		if n >= 2 && n%2 == 0 && (n == len(rest) || !unicode.IsLetter(rune(rest[n]))) {
			return true
		}
	}
	return false
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// lineSeparator returns the Unicode line or paragraph separator (U+2028, U+2029) v holds, if any. They are not
// control characters (hasControl), yet Python's splitlines ends a line at them, and so do the regular expressions
// of JavaScript and Java ("." does not match them, "^" and "$" match beside them in multi-line mode): to a
// relying party that reads the subject line by line or with such a pattern, "dev\u2028CN=evil.com" is the value
// "dev" and a line CN=evil.com; a name never needs them. (U+0085 NEXT LINE is a control character, refused as
// such.)
func lineSeparator(v string) (rune, bool) {
	for _, r := range v {
		if r == '\u2028' || r == '\u2029' {
			return r, true
		}
	}
	return 0, false
}

// attributeTypeChar is a character of an attribute type as DN string readers take one: a keyword (RFC 4514's
// descr: letters, digits, "-") or a dotted OID, with RFC 1779's "OID." prefix.
func attributeTypeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.'
}

// clip shortens attacker-chosen strings before they reach error messages and logs.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

func identityKindName(k IdentityURI) string {
	if k == IdentitySID {
		return "SID (tag:microsoft.com)"
	}
	return "Intune device ID (IntuneDeviceId://, ID:…:GUID:)"
}
