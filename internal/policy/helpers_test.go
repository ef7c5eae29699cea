package policy_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	_ "crypto/md5" // registers crypto.MD5 for the MD5-RSA refusal case
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"sync"
	"testing"
	"unicode/utf16"

	"github.com/azscep/azscep/internal/policy"
)

// Profiles shaped like config's built-in ones; kept here as literals so a change to either is a visible diff.
const (
	specDevice = "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*"
	specIntune = "validity=365d;ku=digitalSignature,keyEncipherment;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid"
	// specWide allows every name the CA understands except IP addresses (the old device profile plus identity URIs).
	specWide   = "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*;identity_uris=sid,intunedeviceid"
	specAllSAN = specWide + ";ip=*"
	// specNoIdentity is specWide without the opt-in to identity URIs and device IDs (the static door's shape).
	specNoIdentity = "validity=365d;ku=digitalSignature;eku=clientAuth;dns=*;email=*;upn=*;uri=*"
)

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
	oidMSTemplateName      = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2}

	oidEKUServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidEKUClientAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidEKUCodeSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	oidEKUEmail       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}
	oidEKUAny         = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
)

func mustProfile(t testing.TB, name, spec string) *policy.Profile {
	t.Helper()
	p, err := policy.ParseProfile(name, spec)
	if err != nil {
		t.Fatalf("ParseProfile(%q): %v", spec, err)
	}
	return p
}

// ---- keys ----

// testKey is a CSR key: either a crypto.Signer or textbook RSA numbers for keys crypto/rsa refuses to hold
// (below 1024 bits, e=3, small factors, close primes).
type testKey struct {
	pub  crypto.PublicKey
	priv crypto.Signer
	raw  *rawRSA
}

type rawRSA struct {
	N, D *big.Int
	E    int
}

var (
	keysOnce sync.Once
	keys     struct {
		rsa2048, rsa3072, rsa1024   *rsa.PrivateKey
		p256, p384, p521            *ecdsa.PrivateKey
		ed                          ed25519.PrivateKey
		rsa512, rsa2040, rsaE3      *rawRSA
		rsaSmallFactor, rsaFermat   *rawRSA
		rsa2048Raw                  *rawRSA
		fermatP, fermatQ, smallPrim *big.Int
	}
	rsa4096Once sync.Once
	rsa4096Key  *rsa.PrivateKey
)

func loadKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		keys.rsa2048, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.rsa3072, err = rsa.GenerateKey(rand.Reader, 3072)
		must(err)
		keys.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		keys.p256, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		keys.p384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		keys.p521, _ = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		_, keys.ed, _ = ed25519.GenerateKey(rand.Reader)
		keys.rsa2048Raw = &rawRSA{N: keys.rsa2048.N, E: keys.rsa2048.E, D: keys.rsa2048.D}

		keys.rsa512 = rawFromPrimes(65537, randPrime(256), randPrime(256))
		keys.rsa2040 = rawFromPrimes(65537, randPrime(1020), randPrime(1020))
		// e=3 needs p ≡ q ≡ 2 (mod 3) so that 3 is invertible modulo λ(N).
		keys.rsaE3 = rawFromPrimes(3, primeWhere(1024, mod3is2), primeWhere(1024, mod3is2))
		// 751 is the largest prime below BR §6.1.6's bound of 752: the boundary case.
		keys.smallPrim = big.NewInt(751)
		for {
			k := rawFromPrimes(65537, keys.smallPrim, randPrime(1019), randPrime(1019))
			if k != nil && k.N.BitLen() == 2048 {
				keys.rsaSmallFactor = k
				break
			}
		}
		// q is the first prime after p + 2^515: Fermat's method needs a few rounds, not one.
		for keys.rsaFermat == nil || keys.rsaFermat.N.BitLen() != 2048 {
			p := randPrime(1024)
			q := nextPrime(new(big.Int).Add(p, new(big.Int).Lsh(big.NewInt(1), 515)))
			keys.fermatP, keys.fermatQ = p, q
			keys.rsaFermat = rawFromPrimes(65537, p, q)
		}
		if err != nil {
			panic(err)
		}
	})
	if keys.rsa2048 == nil || keys.rsaE3 == nil || keys.rsa512 == nil || keys.rsa2040 == nil {
		t.Fatal("test keys were not generated")
	}
}

func rsa4096(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsa4096Once.Do(func() {
		rsa4096Key, _ = rsa.GenerateKey(rand.Reader, 4096)
	})
	if rsa4096Key == nil {
		t.Fatal("RSA-4096 key was not generated")
	}
	return rsa4096Key
}

func randPrime(bits int) *big.Int {
	for {
		p, err := rand.Prime(rand.Reader, bits)
		if err == nil {
			return p
		}
	}
}

func mod3is2(p *big.Int) bool { return new(big.Int).Mod(p, big.NewInt(3)).Int64() == 2 }

func primeWhere(bits int, ok func(*big.Int) bool) *big.Int {
	for {
		if p := randPrime(bits); ok(p) {
			return p
		}
	}
}

func nextPrime(n *big.Int) *big.Int {
	p := new(big.Int).Set(n)
	p.SetBit(p, 0, 1)
	for !p.ProbablyPrime(20) {
		p.Add(p, big.NewInt(2))
	}
	return p
}

// rawFromPrimes builds textbook RSA numbers; nil when e is not invertible modulo λ(N).
func rawFromPrimes(e int64, primes ...*big.Int) *rawRSA {
	n, lambda := big.NewInt(1), big.NewInt(1)
	for _, p := range primes {
		n.Mul(n, p)
		pm1 := new(big.Int).Sub(p, big.NewInt(1))
		g := new(big.Int).GCD(nil, nil, lambda, pm1)
		lambda.Mul(lambda, pm1).Div(lambda, g)
	}
	d := new(big.Int).ModInverse(big.NewInt(e), lambda)
	if d == nil {
		return nil
	}
	return &rawRSA{N: n, E: int(e), D: d}
}

func signerKey(s crypto.Signer) testKey { return testKey{pub: s.Public(), priv: s} }
func rawKey(r *rawRSA) testKey {
	return testKey{pub: &rsa.PublicKey{N: r.N, E: r.E}, raw: r}
}

// ---- signature algorithms ----

type sigAlg struct {
	oid  asn1.ObjectIdentifier
	null bool // RSA algorithm identifiers carry NULL parameters
	hash crypto.Hash
}

var (
	algSHA256RSA   = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, true, crypto.SHA256}
	algSHA1RSA     = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, true, crypto.SHA1}
	algMD5RSA      = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}, true, crypto.MD5}
	algECDSASHA1   = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}, false, crypto.SHA1}
	algECDSASHA256 = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, false, crypto.SHA256}
	algECDSASHA384 = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, false, crypto.SHA384}
	algECDSASHA512 = sigAlg{asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, false, crypto.SHA512}
	algEd25519     = sigAlg{asn1.ObjectIdentifier{1, 3, 101, 112}, false, 0}
	algUnknown     = sigAlg{asn1.ObjectIdentifier{1, 2, 3, 4}, false, crypto.SHA256}
)

func defaultAlg(pub crypto.PublicKey) sigAlg {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			return algECDSASHA384
		case elliptic.P521():
			return algECDSASHA512
		}
		return algECDSASHA256
	case ed25519.PublicKey:
		return algEd25519
	}
	return algSHA256RSA
}

// sha256DigestInfo is the DER prefix of DigestInfo{sha256, NULL, OCTET STRING(32)} (RFC 8017 §9.2 note 1).
var sha256DigestInfo = []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	0x01, 0x05, 0x00, 0x04, 0x20}

func sign(t testing.TB, k testKey, alg sigAlg, tbs []byte) []byte {
	t.Helper()
	if k.raw != nil {
		if alg.hash != crypto.SHA256 {
			t.Fatalf("raw RSA signing supports SHA-256 only")
		}
		h := sha256.Sum256(tbs)
		size := (k.raw.N.BitLen() + 7) / 8
		em := make([]byte, size)
		em[1] = 1
		digestInfo := append(append([]byte{}, sha256DigestInfo...), h[:]...)
		for i := 2; i < size-len(digestInfo)-1; i++ {
			em[i] = 0xff
		}
		copy(em[size-len(digestInfo):], digestInfo)
		s := new(big.Int).Exp(new(big.Int).SetBytes(em), k.raw.D, k.raw.N)
		return s.FillBytes(make([]byte, size))
	}
	msg, opts := tbs, crypto.SignerOpts(crypto.Hash(0))
	if alg.hash != 0 {
		h := alg.hash.New()
		h.Write(tbs)
		msg, opts = h.Sum(nil), alg.hash
	}
	sig, err := k.priv.Sign(rand.Reader, msg, opts)
	if err != nil {
		t.Fatalf("signing CSR: %v", err)
	}
	return sig
}

// ---- CSR construction ----

// csrSpec describes a CSR built by hand, so the tests can say what Go's CreateCertificateRequest cannot.
type csrSpec struct {
	key     *testKey // default RSA-2048
	alg     *sigAlg  // default per key type
	subject []byte   // raw Name; nil means CN=device-1; use emptyName for an empty subject
	exts    []pkix.Extension
	attrs   [][]byte // extra raw Attribute encodings
	// tamperTBS changes the to-be-signed bytes after signing.
	tamperTBS func([]byte) []byte
	// tamperSig changes the signature value.
	tamperSig func([]byte) []byte
}

var emptyName = []byte{0x30, 0x00}

func buildCSR(t testing.TB, s csrSpec) []byte {
	t.Helper()
	loadKeys(t)
	k := signerKey(keys.rsa2048)
	if s.key != nil {
		k = *s.key
	}
	alg := defaultAlg(k.pub)
	if s.alg != nil {
		alg = *s.alg
	}
	subject := s.subject
	if subject == nil {
		subject = name(t, pkix.Name{CommonName: "device-1"})
	}
	spki, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	var attrs []byte
	if len(s.exts) > 0 {
		extsDER := mustMarshal(t, s.exts)
		attrs = append(attrs, attribute(t, oidExtensionRequest, extsDER)...)
	}
	for _, a := range s.attrs {
		attrs = append(attrs, a...)
	}
	tbs := mustMarshal(t, struct {
		Version int
		Subject asn1.RawValue
		SPKI    asn1.RawValue
		Attrs   asn1.RawValue
	}{0, asn1.RawValue{FullBytes: subject}, asn1.RawValue{FullBytes: spki},
		asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: attrs}})
	sig := sign(t, k, alg, tbs)
	if s.tamperTBS != nil {
		tbs = s.tamperTBS(append([]byte(nil), tbs...))
	}
	if s.tamperSig != nil {
		sig = s.tamperSig(sig)
	}
	algID := pkix.AlgorithmIdentifier{Algorithm: alg.oid}
	if alg.null {
		algID.Parameters = asn1.NullRawValue
	}
	return mustMarshal(t, struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, algID, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatalf("asn1.Marshal(%T): %v", v, err)
	}
	return b
}

func name(t testing.TB, n pkix.Name) []byte {
	t.Helper()
	return mustMarshal(t, n.ToRDNSequence())
}

// attribute encodes Attribute ::= SEQUENCE { type OID, values SET OF ANY } from already-encoded values.
func attribute(t testing.TB, oid asn1.ObjectIdentifier, values ...[]byte) []byte {
	t.Helper()
	var set []byte
	for _, v := range values {
		set = append(set, v...)
	}
	return mustMarshal(t, struct {
		Type   asn1.ObjectIdentifier
		Values asn1.RawValue
	}{oid, asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: set}})
}

func ext(t testing.TB, oid asn1.ObjectIdentifier, critical bool, value any) pkix.Extension {
	t.Helper()
	b, ok := value.([]byte)
	if !ok {
		b = mustMarshal(t, value)
	}
	return pkix.Extension{Id: oid, Critical: critical, Value: b}
}

// kuExt encodes a keyUsage request; Go's CreateCertificateRequest has no KeyUsage field.
func kuExt(t testing.TB, ku x509.KeyUsage) pkix.Extension {
	t.Helper()
	var bs asn1.BitString
	bs.Bytes = make([]byte, 2)
	for i := 0; i < 9; i++ {
		if ku&(1<<i) != 0 {
			bs.Bytes[i/8] |= 0x80 >> (i % 8)
			bs.BitLength = i + 1
		}
	}
	bs.Bytes = bs.Bytes[:(bs.BitLength+7)/8]
	return ext(t, oidExtKeyUsage, true, bs)
}

func ekuExt(t testing.TB, oids ...asn1.ObjectIdentifier) pkix.Extension {
	t.Helper()
	return ext(t, oidExtExtKeyUsage, false, oids)
}

// GeneralName builders (RFC 5280 §4.2.1.6).
func gnDNS(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(s)}
}
func gnEmail(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(s)}
}
func gnURI(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(s)}
}
func gnIP(b []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: b}
}

// gnOther encodes otherName ::= [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }.
func gnOther(t testing.TB, oid asn1.ObjectIdentifier, value asn1.RawValue) asn1.RawValue {
	t.Helper()
	// encoding/asn1 ignores tag parameters on RawValue fields when marshalling, so the [0] EXPLICIT wrapper is
	// spelled out.
	inner, err := asn1.Marshal(value)
	if err != nil {
		t.Fatalf("marshal otherName value: %v", err)
	}
	der, err := asn1.MarshalWithParams(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{oid, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}}, "tag:0")
	if err != nil {
		t.Fatalf("marshal otherName: %v", err)
	}
	return asn1.RawValue{FullBytes: der}
}

func gnUPN(t testing.TB, upn string) asn1.RawValue {
	return gnOther(t, oidUPN, asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(upn)})
}

// gnDirName is directoryName [4] EXPLICIT Name.
func gnDirName(nameDER []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: nameDER}
}

// gnRegisteredID is registeredID [8] IMPLICIT OBJECT IDENTIFIER.
func gnRegisteredID(t testing.TB, oid asn1.ObjectIdentifier) asn1.RawValue {
	t.Helper()
	var full asn1.RawValue
	if _, err := asn1.Unmarshal(mustMarshal(t, oid), &full); err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: full.Bytes}
}

func sanExt(t testing.TB, names ...asn1.RawValue) pkix.Extension {
	t.Helper()
	if names == nil {
		names = []asn1.RawValue{}
	}
	return ext(t, oidExtSAN, false, names)
}

// ---- attribute value builders ----

func bmp(s string) asn1.RawValue {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c>>8), byte(c)
	}
	return asn1.RawValue{Tag: asn1.TagBMPString, Bytes: b}
}

func utf8Str(s string) asn1.RawValue { return asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)} }
func printable(s string) asn1.RawValue {
	return asn1.RawValue{Tag: asn1.TagPrintableString, Bytes: []byte(s)}
}

func der(t testing.TB, v asn1.RawValue) []byte { return mustMarshal(t, v) }

// seq encodes SEQUENCE { elements... } from already-encoded elements.
func seq(elems ...[]byte) []byte {
	var b []byte
	for _, e := range elems {
		b = append(b, e...)
	}
	out, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: b})
	return out
}

// pair is EnrollmentNameValuePair ::= SEQUENCE { name BMPString, value BMPString }.
func pair(t testing.TB, n, v string) []byte { return seq(der(t, bmp(n)), der(t, bmp(v))) }

// validityPerValue puts each pair in its own attribute value (what Windows clients send).
func validityPerValue(t testing.TB, unit, units string) []byte {
	return attribute(t, oidValidityAttr, pair(t, "ValidityPeriod", unit), pair(t, "ValidityPeriodUnits", units))
}

// validitySequence wraps both pairs in one SEQUENCE OF value (the other encoding seen in the wild).
func validitySequence(t testing.TB, unit, units string) []byte {
	return attribute(t, oidValidityAttr, seq(pair(t, "ValidityPeriod", unit), pair(t, "ValidityPeriodUnits", units)))
}

// ---- assertions ----

func checkDER(der []byte, p *policy.Profile) (*policy.Request, error) {
	csr, err := policy.ParseCSR(der)
	if err != nil {
		return nil, err
	}
	return policy.Check(csr, p)
}

// wantCode fails unless err is a *policy.Rejection with the code (or nil when code is "").
func wantCode(t testing.TB, err error, code policy.Code) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("got error %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %s", code)
	}
	r, ok := policy.AsRejection(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *policy.Rejection", err, err)
	}
	if r.Code != code {
		t.Fatalf("got code %s (%v), want %s", r.Code, err, code)
	}
	var target *policy.Rejection
	if !errors.As(err, &target) || target.Detail == "" {
		t.Fatalf("rejection %v has no detail", err)
	}
}
