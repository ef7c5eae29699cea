package lint_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/lint"
)

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLinterCheck(t *testing.T) {
	loadFixtures(t)
	type basicConstraints struct {
		IsCA    bool `asn1:"optional"`
		PathLen int  `asn1:"optional,default:-1"`
	}
	upnSAN := pkix.Extension{Id: oidSAN, Critical: true, Value: mustMarshal(t, []asn1.RawValue{
		{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte("alice@contoso.com")}})}
	for _, tc := range []struct {
		name    string
		rsaCA   bool
		pub     func() crypto.PublicKey
		mutate  func(tmpl *x509.Certificate, want *lint.Expect)
		wantErr string // "" means the leaf must pass
	}{
		{name: "ok/p256-leaf"},
		{name: "ok/rsa-leaf-rsa-ca", rsaCA: true, pub: func() crypto.PublicKey { return keys.leafRSA.Public() }},
		{name: "ok/intune-shape-keyEncipherment", rsaCA: true, pub: func() crypto.PublicKey { return keys.leafRSA.Public() },
			mutate: func(c *x509.Certificate, w *lint.Expect) {
				c.KeyUsage |= x509.KeyUsageKeyEncipherment
				w.KeyUsage = c.KeyUsage
			}},
		{name: "ok/empty-subject-critical-san", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.Subject, c.DNSNames, c.ExtraExtensions = pkix.Name{}, nil, []pkix.Extension{upnSAN}
		}},
		{name: "ok/validity-at-cap-plus-backdate", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.NotAfter = c.NotBefore.Add(maxValidity + time.Hour)
		}},
		{name: "ok/serial-20-octets", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.SerialNumber = new(big.Int).SetBytes(append([]byte{0x7f}, bytes.Repeat([]byte{0xa5}, 19)...))
		}},

		{name: "fail/ca-true", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.IsCA = true },
			wantErr: "CA:FALSE"},
		{name: "fail/no-basic-constraints", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.BasicConstraintsValid = false },
			wantErr: "CA:FALSE"},
		{name: "fail/basic-constraints-not-critical", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.BasicConstraintsValid = false
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidBasicConstraints,
				Value: mustMarshal(t, basicConstraints{PathLen: -1})})
		}, wantErr: "must be critical"},
		// Go refuses MaxPathLen on a non-CA template, so the extension is spelled out.
		{name: "fail/path-length-on-leaf", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.BasicConstraintsValid = false
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidBasicConstraints, Critical: true,
				Value: mustMarshal(t, basicConstraints{PathLen: 0})})
		}, wantErr: "path length"},
		{name: "fail/keyCertSign", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.KeyUsage |= x509.KeyUsageCertSign
			w.KeyUsage = c.KeyUsage
		}, wantErr: "keyCertSign"},
		{name: "fail/cRLSign", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.KeyUsage |= x509.KeyUsageCRLSign
			w.KeyUsage = c.KeyUsage
		}, wantErr: "keyCertSign or cRLSign"},
		{name: "fail/key-usage-mismatch", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.KeyUsage |= x509.KeyUsageKeyEncipherment
		}, wantErr: "key usage"},
		{name: "fail/no-key-usage", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.KeyUsage = 0 }, wantErr: "key usage"},
		{name: "fail/eku-mismatch", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}, wantErr: "extended key usage differs"},
		{name: "fail/eku-missing", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.ExtKeyUsage = nil },
			wantErr: "extended key usage differs"},
		{name: "fail/unknown-eku", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 10, 3, 4}}
		}, wantErr: "extended key usage differs"},
		{name: "fail/code-signing-even-if-expected", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning}
			w.ExtKeyUsage = c.ExtKeyUsage
		}, wantErr: "never issued"},
		{name: "fail/any-eku-even-if-expected", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
			w.ExtKeyUsage = c.ExtKeyUsage
		}, wantErr: "never issued"},
		{name: "fail/serial-zero", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.SerialNumber = big.NewInt(0) },
			wantErr: "positive"},
		{name: "fail/serial-short", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.SerialNumber = big.NewInt(7) },
			wantErr: "fewer than 64 bits"},
		{name: "fail/serial-63-bits", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.SerialNumber = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 64), big.NewInt(1))
		}, wantErr: "fewer than 64 bits"},
		// A 20-byte magnitude with the top bit set encodes as 21 octets (a leading zero keeps it positive).
		{name: "fail/serial-21-octets", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.SerialNumber = new(big.Int).SetBytes(append([]byte{0x80}, bytes.Repeat([]byte{0xa5}, 19)...))
		}, wantErr: "20 octets"},
		{name: "fail/serial-21-byte-magnitude", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.SerialNumber = new(big.Int).SetBytes(bytes.Repeat([]byte{0x11}, 21))
		}, wantErr: "20 octets"},
		{name: "fail/not-after-before-not-before", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.NotAfter = c.NotBefore.Add(-time.Second)
		}, wantErr: "notAfter is not after notBefore"},
		{name: "fail/validity-over-cap", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.NotAfter = c.NotBefore.Add(maxValidity + 3*time.Hour)
		}, wantErr: "exceeds the profile cap"},
		{name: "fail/outlives-issuer", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.NotAfter = fixtures.caEC.NotAfter.Add(time.Second)
			w.MaxValidity = 10 * maxValidity
		}, wantErr: "outlives"},
		{name: "fail/backdated-too-far", mutate: func(c *x509.Certificate, w *lint.Expect) {
			c.NotBefore = w.NotBefore.Add(-time.Minute)
		}, wantErr: "back-dated"},
		{name: "fail/missing-ski", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.SubjectKeyId = nil },
			wantErr: "subject key identifier"},
		{name: "fail/ecdsa-sha1", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.SignatureAlgorithm = x509.ECDSAWithSHA1 },
			wantErr: "weak signature algorithm"},
		{name: "fail/sha1-rsa", rsaCA: true, mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.SignatureAlgorithm = x509.SHA1WithRSA
		}, wantErr: "weak signature algorithm"},
		{name: "fail/no-names", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.Subject, c.DNSNames = pkix.Name{}, nil },
			wantErr: "names nobody"},
		{name: "fail/empty-subject-non-critical-san", mutate: func(c *x509.Certificate, _ *lint.Expect) {
			san := upnSAN
			san.Critical = false
			c.Subject, c.DNSNames, c.ExtraExtensions = pkix.Name{}, nil, []pkix.Extension{san}
		}, wantErr: "must be critical when the subject is empty"},
		{name: "fail/rsa-1024-leaf", pub: func() crypto.PublicKey { return keys.leafRSA1024.Public() },
			wantErr: "RSA key below 2048"},
		{name: "fail/p521-leaf", pub: func() crypto.PublicKey { return keys.leafP521.Public() }, wantErr: "curve"},
		{name: "fail/ed25519-leaf", pub: func() crypto.PublicKey { return keys.leafEd.Public() }, wantErr: "never issued"},
		// RSA-PSS lints clean, but the CA signs only PKCS #1 v1.5 and ECDSA (lint.SignatureHash): refused before
		// any record or key operation.
		{name: "fail/rsa-pss", rsaCA: true, mutate: func(c *x509.Certificate, _ *lint.Expect) {
			c.SignatureAlgorithm = x509.SHA256WithRSAPSS
		}, wantErr: "not signed by this CA"},
		// Go itself refuses this template; the Linter must report that as a lint failure, not sign anyway.
		{name: "fail/template-go-refuses", mutate: func(c *x509.Certificate, _ *lint.Expect) { c.MaxPathLen = 2 },
			wantErr: "building the to-be-signed certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ca := fixtures.linterEC, fixtures.caEC
			if tc.rsaCA {
				l, ca = fixtures.linterRSA, fixtures.caRSA
			}
			pub := keys.leafEC.Public()
			if tc.pub != nil {
				pub = tc.pub()
			}
			now := time.Now()
			tmpl := leafTemplate(t, pub, now)
			want := expectFor(tmpl, now)
			if tc.mutate != nil {
				tc.mutate(tmpl, &want)
			}
			plan, err := l.Check(tmpl, pub, want)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				assertLinted(t, plan, ca, pub)
				return
			}
			if !errors.Is(err, lint.ErrLint) {
				t.Fatalf("Check error %v does not wrap ErrLint", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check error %q does not mention %q", err, tc.wantErr)
			}
			if plan != nil {
				t.Fatal("Check returned a planned certificate with an error")
			}
		})
	}
}

// assertLinted checks what Check returns: the planned certificate, with the real issuer's name and key
// identifier, for the subject's key, and no signature by anyone (the CA key never saw it); its parts are those of
// its DER, and Cert is that DER parsed.
func assertLinted(t *testing.T, plan *lint.Planned, ca *x509.Certificate, pub crypto.PublicKey) {
	t.Helper()
	c, err := x509.ParseCertificate(plan.DER)
	if err != nil {
		t.Fatalf("linted DER does not parse: %v", err)
	}
	if !bytes.Equal(plan.Cert.Raw, plan.DER) || !bytes.Equal(c.RawTBSCertificate, plan.TBSCertificate) ||
		len(c.Signature) != 0 {
		t.Fatal("Planned's parts differ from its DER, or the planned certificate carries a signature")
	}
	if hash, err := lint.SignatureHash(c.SignatureAlgorithm); err != nil || hash != plan.Hash {
		t.Fatalf("Planned.Hash = %v, want %v (%v)", plan.Hash, hash, err)
	}
	if !bytes.Equal(c.RawIssuer, ca.RawSubject) || !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
		t.Fatal("linted certificate does not name the real issuer")
	}
	if !c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Fatal("linted certificate carries another key")
	}
	if err := c.CheckSignatureFrom(ca); err == nil {
		t.Fatal("linted certificate verifies under the real CA key: the Linter must never hold it")
	}
	if err := lint.Certificate(c, ca, lint.Expect{KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage,
		MaxValidity: maxValidity}); err != nil {
		t.Fatalf("re-linting the returned certificate: %v", err)
	}
}

// TestCertificateIssuerChecks covers failures Linter.Check cannot produce because it always uses the real names.
func TestCertificateIssuerChecks(t *testing.T) {
	loadFixtures(t)
	now := time.Now()
	tmpl := leafTemplate(t, keys.leafEC.Public(), now)
	want := expectFor(tmpl, now)
	plan, err := fixtures.linterEC.Check(tmpl, keys.leafEC.Public(), want)
	if err != nil {
		t.Fatal(err)
	}
	leaf := plan.Cert
	otherSKI := *fixtures.caEC
	otherSKI.SubjectKeyId = bytes.Repeat([]byte{1}, 20)
	noSKI := *fixtures.caEC
	noSKI.SubjectKeyId = nil
	for _, tc := range []struct {
		name    string
		issuer  *x509.Certificate
		wantErr string
	}{
		{"ok/real-issuer", fixtures.caEC, ""},
		{"ok/issuer-without-ski", &noSKI, ""},
		{"fail/wrong-issuer-name", fixtures.otherCA, "issuer name"},
		{"fail/authority-key-id-mismatch", &otherSKI, "authority key identifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := lint.Certificate(leaf, tc.issuer, want)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, lint.ErrLint) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Certificate() = %v, want ErrLint mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	loadFixtures(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edCA, err := selfSignedCA("ed25519 CA", edKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lint.New(edCA); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("New(Ed25519 CA) = %v, want unsupported", err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca384, err := selfSignedCA("P-384 CA", p384)
	if err != nil {
		t.Fatal(err)
	}
	l, err := lint.New(ca384)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := leafTemplate(t, keys.leafEC.Public(), now)
	plan, err := l.Check(tmpl, keys.leafEC.Public(), expectFor(tmpl, now))
	if err != nil {
		t.Fatal(err)
	}
	c := plan.Cert
	if plan.Hash != crypto.SHA384 || c.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Fatalf("planned certificate does not carry the P-384 CA's signature algorithm: %v", c.SignatureAlgorithm)
	}
	if err := c.CheckSignatureFrom(ca384); err == nil {
		t.Fatal("signed by the real CA key")
	}
}

// TestPlannedTBSIsWhatTheCASigns: the CA signs the planned to-be-signed bytes themselves (WithSignature), so the
// signed certificate's TBS is byte for byte the linted one, and it verifies under the CA certificate with
// crypto/x509. The planned TBS is also what crypto/x509 itself would have signed from the same template, so
// building the certificate from the linted bytes changes nothing a client sees.
func TestPlannedTBSIsWhatTheCASigns(t *testing.T) {
	loadFixtures(t)
	for _, tc := range []struct {
		name   string
		l      *lint.Linter
		ca     *x509.Certificate
		caKey  crypto.Signer
		leaf   crypto.PublicKey
		sigAlg x509.SignatureAlgorithm
	}{
		{"rsa", fixtures.linterRSA, fixtures.caRSA, keys.caRSA, keys.leafRSA.Public(), x509.SHA256WithRSA},
		{"ecdsa", fixtures.linterEC, fixtures.caEC, keys.caEC, keys.leafEC.Public(), x509.ECDSAWithSHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			tmpl := leafTemplate(t, tc.leaf, now)
			plan, err := tc.l.Check(tmpl, tc.leaf, expectFor(tmpl, now))
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Cert.Signature) != 0 || plan.Cert.SignatureAlgorithm != tc.sigAlg || plan.Hash != crypto.SHA256 {
				t.Errorf("planned certificate signature %d bytes, algorithm %v, hash %v; want none, %v, SHA-256",
					len(plan.Cert.Signature), plan.Cert.SignatureAlgorithm, plan.Hash, tc.sigAlg)
			}
			digest := sha256.Sum256(plan.TBSCertificate)
			sig, err := tc.caKey.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			der, err := plan.WithSignature(sig)
			if err != nil {
				t.Fatal(err)
			}
			signed, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatalf("signed certificate does not parse: %v", err)
			}
			if !bytes.Equal(signed.RawTBSCertificate, plan.TBSCertificate) {
				t.Error("the CA signed other to-be-signed bytes than the ones linted")
			}
			if err := signed.CheckSignatureFrom(tc.ca); err != nil {
				t.Errorf("signed certificate does not verify under the CA: %v", err)
			}
			viaX509, err := x509.CreateCertificate(rand.Reader, tmpl, tc.ca, tc.leaf, tc.caKey)
			if err != nil {
				t.Fatal(err)
			}
			real, err := x509.ParseCertificate(viaX509)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(real.RawTBSCertificate, plan.TBSCertificate) {
				t.Error("crypto/x509 would have signed other to-be-signed bytes than the ones linted")
			}
		})
	}
}

// TestSignatureHash: only SHA-2 with PKCS #1 v1.5 or ECDSA is signed; everything else fails closed.
func TestSignatureHash(t *testing.T) {
	for alg, want := range map[x509.SignatureAlgorithm]crypto.Hash{
		x509.SHA256WithRSA: crypto.SHA256, x509.SHA384WithRSA: crypto.SHA384, x509.SHA512WithRSA: crypto.SHA512,
		x509.ECDSAWithSHA256: crypto.SHA256, x509.ECDSAWithSHA384: crypto.SHA384, x509.ECDSAWithSHA512: crypto.SHA512,
	} {
		if got, err := lint.SignatureHash(alg); err != nil || got != want {
			t.Errorf("SignatureHash(%v) = %v, %v; want %v", alg, got, err, want)
		}
	}
	for _, alg := range []x509.SignatureAlgorithm{x509.SHA256WithRSAPSS, x509.SHA512WithRSAPSS, x509.PureEd25519,
		x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.MD5WithRSA, x509.UnknownSignatureAlgorithm, 999} {
		if got, err := lint.SignatureHash(alg); err == nil {
			t.Errorf("SignatureHash(%v) = %v, want an error", alg, got)
		}
	}
}
