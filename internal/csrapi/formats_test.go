package csrapi_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mozpkcs7 "go.mozilla.org/pkcs7"

	"github.com/azscep/azscep/internal/csrapi"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// wrap64 base64-encodes b in lines of 64 characters joined by sep, as PEM bodies and `base64` tools write them.
func wrap64(b []byte, sep string) []byte {
	s := base64.StdEncoding.EncodeToString(b)
	var lines []string
	for len(s) > 64 {
		lines = append(lines, s[:64])
		s = s[64:]
	}
	lines = append(lines, s)
	return []byte(strings.Join(lines, sep) + sep)
}

// cmsWrap signs csr in a CMS SignedData with key and a self-signed certificate for it, as certreq and some MDMs
// wrap requests.
func cmsWrap(t *testing.T, key *rsa.PrivateKey, csr []byte, signers bool) []byte {
	t.Helper()
	sd, err := mozpkcs7.NewSignedData(csr)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(mozpkcs7.OIDDigestAlgorithmSHA256)
	if signers {
		signer := testca.SelfSigned(t, key, cn("cms-signer"))
		if err := sd.AddSigner(signer, key, mozpkcs7.SignerInfoConfig{}); err != nil {
			t.Fatalf("AddSigner: %v", err)
		}
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return der
}

// TestRequestFormats: the same CSR arrives as DER, PEM, base64 or CMS under each accepted media type, and each
// yields a certificate for exactly that CSR's key and subject.
func TestRequestFormats(t *testing.T) {
	e := newEnv(t)
	key := testca.RSAKey(t, 3)
	cms := func(t *testing.T, csr []byte) []byte { return cmsWrap(t, key, csr, true) }
	cases := []struct {
		name        string
		contentType string
		body        func(t *testing.T, der []byte) []byte
	}{
		{"DER application/pkcs10", "application/pkcs10", func(_ *testing.T, der []byte) []byte { return der }},
		{"DER application/octet-stream", "application/octet-stream", func(_ *testing.T, der []byte) []byte { return der }},
		{"DER without Content-Type", "", func(_ *testing.T, der []byte) []byte { return der }},
		{"DER with parameters", "application/pkcs10; charset=binary", func(_ *testing.T, der []byte) []byte { return der }},
		{"PEM application/x-pem-file", "application/x-pem-file", func(_ *testing.T, der []byte) []byte { return pemCSR(der) }},
		{"PEM application/pkcs10", "application/pkcs10", func(_ *testing.T, der []byte) []byte { return pemCSR(der) }},
		{"PEM with CRLF and surrounding blank lines", "text/plain", func(_ *testing.T, der []byte) []byte {
			return []byte("\r\n" + strings.ReplaceAll(string(pemCSR(der)), "\n", "\r\n") + "\r\n\r\n")
		}},
		{"PEM NEW CERTIFICATE REQUEST", "", func(_ *testing.T, der []byte) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: der})
		}},
		{"base64 one line", "text/plain", func(_ *testing.T, der []byte) []byte {
			return []byte(base64.StdEncoding.EncodeToString(der))
		}},
		{"base64 wrapped LF", "application/pkcs10", func(_ *testing.T, der []byte) []byte { return wrap64(der, "\n") }},
		{"base64 wrapped CRLF", "", func(_ *testing.T, der []byte) []byte { return wrap64(der, "\r\n") }},
		{"CMS DER application/pkcs7-mime", "application/pkcs7-mime", cms},
		{"CMS application/pkcs7-mime with smime-type", "application/pkcs7-mime; smime-type=CMC-request", cms},
		{"CMS base64 application/pkcs7-mime", "application/pkcs7-mime", func(t *testing.T, der []byte) []byte {
			return wrap64(cms(t, der), "\n")
		}},
		{"CMS PEM PKCS7 block", "application/x-pem-file", func(t *testing.T, der []byte) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: cms(t, der)})
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A distinct subject per case: each is a new request, not a retry of the one before.
			subject := cn("format-" + string(rune('a'+i)))
			csr := testca.CSR(t, key, testca.CSROptions{Subject: subject})
			r := e.do(request{body: tc.body(t, csr.Raw), contentType: tc.contentType, auth: bearer(e.appToken())})
			cert := e.wantCert(r)
			if cert.Subject.CommonName != subject.CommonName {
				t.Fatalf("subject = %q, want %q", cert.Subject.CommonName, subject.CommonName)
			}
			if !key.PublicKey.Equal(cert.PublicKey) {
				t.Fatal("certificate is not for the CSR's key")
			}
			if rec := e.record(cert); rec.CSRHash == "" {
				t.Fatal("record has no CSR hash")
			}
		})
	}
}

// TestRequestRejections: the transport and encoding refusals of reliability.md §4.1/§4.3, and the policy codes
// passed through as 400.
func TestRequestRejections(t *testing.T) {
	e := newEnv(t)
	key := ecKey(t, "reject")
	der := csrDER(t, key, testca.CSROptions{Subject: cn("reject-device")})
	rsaKey := testca.RSAKey(t, 4)
	pemDER := pemCSR(der)

	cases := []struct {
		name        string
		body        []byte
		bodyReader  func() io.Reader
		contentType string
		status      int
		code        string
	}{
		{name: "JSON", body: []byte(`{"csr":"` + base64.StdEncoding.EncodeToString(der) + `"}`),
			contentType: "application/json", status: http.StatusUnsupportedMediaType, code: csrapi.CodeMediaType},
		{name: "form", body: der, contentType: "application/x-www-form-urlencoded",
			status: http.StatusUnsupportedMediaType, code: csrapi.CodeMediaType},
		{name: "malformed Content-Type", body: der, contentType: "application/", status: http.StatusUnsupportedMediaType,
			code: csrapi.CodeMediaType},
		{name: "64 KiB + 1 with Content-Length", body: bytes.Repeat([]byte{'A'}, httpx.MaxBody+1),
			contentType: "application/pkcs10", status: http.StatusRequestEntityTooLarge, code: csrapi.CodeTooLarge},
		{name: "64 KiB + 1 chunked", bodyReader: func() io.Reader {
			return io.MultiReader(bytes.NewReader(der), bytes.NewReader(make([]byte, httpx.MaxBody+1-len(der))))
		}, contentType: "application/pkcs10", status: http.StatusRequestEntityTooLarge, code: csrapi.CodeTooLarge},
		{name: "empty body", body: nil, contentType: "application/pkcs10", status: 400, code: csrapi.CodeBadEncoding},
		{name: "whitespace only", body: []byte(" \r\n\t"), status: 400, code: csrapi.CodeBadEncoding},
		{name: "garbage", body: []byte("this is not a certificate request!"), status: 400, code: csrapi.CodeBadEncoding},
		{name: "binary garbage", body: []byte{0xff, 0x00, 0x13, 0x37}, status: 400, code: csrapi.CodeBadEncoding},
		{name: "two PEM blocks", body: append(append([]byte{}, pemDER...), pemDER...), status: 400, code: csrapi.CodeBadEncoding},
		// A vertical tab in the first block's base64: OpenSSL reads it as whitespace and shows the first request; Go's
		// pem.Decode skips the block and returns the second, which nothing would have shown a reviewer.
		{name: "two PEM blocks, the first undecodable", body: func() []byte {
			other := pemCSR(csrDER(t, ecKey(t, "reject-hidden"), testca.CSROptions{Subject: cn("hidden-device")}))
			lines := strings.SplitN(string(pemDER), "\n", 3)
			return []byte(lines[0] + "\n" + lines[1] + "\v\n" + lines[2] + string(other))
		}(), contentType: "application/x-pem-file", status: 400, code: csrapi.CodeBadEncoding},
		{name: "trailing data after PEM", body: append(append([]byte{}, pemDER...), "trailing"...), status: 400,
			code: csrapi.CodeBadEncoding},
		{name: "PEM of a certificate", body: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.Cert.Raw}),
			status: 400, code: csrapi.CodeBadEncoding},
		{name: "empty PEM block", body: []byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"),
			status: 400, code: csrapi.CodeBadEncoding},
		{name: "unterminated PEM", body: pemDER[:len(pemDER)-10], status: 400, code: csrapi.CodeBadEncoding},
		{name: "base64 with a bad character", body: append(wrap64(der, "\n"), '*'), status: 400, code: csrapi.CodeBadEncoding},
		{name: "CMS that does not parse", body: der, contentType: "application/pkcs7-mime", status: 400,
			code: csrapi.CodeBadEncoding},
		{name: "CMS without a signer", body: cmsWrap(t, rsaKey, der, false), contentType: "application/pkcs7-mime",
			status: 400, code: csrapi.CodeBadEncoding},
		{name: "CMS whose signature does not verify", body: func() []byte {
			b := cmsWrap(t, rsaKey, der, true)
			b[len(b)-1] ^= 0x01 // the last octet of the signer's signature
			return b
		}(), contentType: "application/pkcs7-mime", status: 400, code: csrapi.CodeBadEncoding},
		{name: "DER with trailing data", body: append(append([]byte{}, der...), 0, 0), contentType: "application/pkcs10",
			status: 400, code: string(policy.CodeMalformedCSR)},
		{name: "truncated DER", body: der[:len(der)/2], status: 400, code: string(policy.CodeMalformedCSR)},
		{name: "a certificate instead of a CSR", body: e.ca.Cert.Raw, status: 400, code: string(policy.CodeMalformedCSR)},
		{name: "SHA-1 CSR", body: csrDER(t, rsaKey, testca.CSROptions{Subject: cn("sha1"), SHA1: true}), status: 400,
			code: string(policy.CodeBadSignatureAlg)},
		{name: "1024-bit key", body: csrDER(t, testca.WeakRSAKey(t), testca.CSROptions{Subject: cn("weak")}), status: 400,
			code: string(policy.CodeBadKey)},
		{name: "CA:TRUE", body: csrDER(t, key, testca.CSROptions{Subject: cn("ca"), RequestCA: true}), status: 400,
			code: string(policy.CodeForbiddenExtension)},
		{name: "keyCertSign", body: csrDER(t, key, testca.CSROptions{Subject: cn("kcs"), KeyUsage: x509.KeyUsageCertSign}),
			status: 400, code: string(policy.CodeForbiddenExtension)},
		{name: "serverAuth", body: csrDER(t, key, testca.CSROptions{Subject: cn("tls"),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}), status: 400, code: string(policy.CodeExtKeyUsage)},
		{name: "bad CSR signature", body: csrDER(t, key, testca.CSROptions{Subject: cn("forged"), BadSignature: true}),
			status: 400, code: string(policy.CodeBadCSRSignature)},
		{name: "IP SAN outside the profile", body: csrDER(t, key, testca.CSROptions{Subject: cn("ip"),
			ExtraExtensions: []pkix.Extension{{Id: oidExtSAN, Value: mustASN1(t, []asn1.RawValue{
				{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: []byte{10, 0, 0, 1}}})}}}),
			status: 400, code: string(policy.CodeSAN)},
		// The api profile allows no IP address: a CN a trimming or inet_aton reader reads as one is refused too.
		{name: "CN padded with white space", body: csrDER(t, key, testca.CSROptions{Subject: cn("\u00A010.0.0.1")}),
			status: 400, code: string(policy.CodeSubject)},
		{name: "CN whose first word is an IP address", body: csrDER(t, key, testca.CSROptions{Subject: cn("10.0.0.1 printer")}),
			status: 400, code: string(policy.CodeSubject)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request{body: tc.body, contentType: tc.contentType, auth: bearer(e.appToken())}
			if tc.bodyReader != nil {
				req.bodyReader = tc.bodyReader()
			}
			p := wantProblem(t, e.do(req), tc.status, tc.code)
			if p.Detail == "" {
				t.Fatal("problem has no detail")
			}
		})
	}
	if n := e.records(""); n != 0 {
		t.Fatalf("records = %d after refused requests, want 0", n)
	}
}

// TestValidityAttribute: the CSR's Microsoft validity attribute shortens the certificate, and never lengthens it.
func TestValidityAttribute(t *testing.T) {
	e := newEnv(t)
	key := ecKey(t, "validity")
	now := e.clock.Now()
	// notAfter is inclusive (RFC 5280 §4.1.2.5), so a period of d ends at now + d − 1 s.
	end := func(d time.Duration) time.Time { return now.Add(d - time.Second) }

	cert := e.wantCert(e.post(e.appToken(), csrWithValidity(t, key, cn("short-lived"), "Days", 7)))
	if want := end(7 * 24 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Fatalf("NotAfter = %s, want %s (7 days as requested)", cert.NotAfter, want)
	}
	cert = e.wantCert(e.post(e.appToken(), csrWithValidity(t, key, cn("hours"), "Hours", 12)))
	if want := end(12 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Fatalf("NotAfter = %s, want %s (12 hours as requested)", cert.NotAfter, want)
	}
	// Asking for more than the profile allows gets the profile's maximum, which counts from notBefore: the whole
	// validity, back-dating included, is the profile's.
	cert = e.wantCert(e.post(e.appToken(), csrWithValidity(t, key, cn("greedy"), "Years", 10)))
	if want := end(e.profile.MaxValidity).Add(-5 * time.Minute); !cert.NotAfter.Equal(want) {
		t.Fatalf("NotAfter = %s, want the profile maximum %s", cert.NotAfter, want)
	}
	if want := now.Add(-5 * time.Minute); !cert.NotBefore.Equal(want) {
		t.Fatalf("NotBefore = %s, want %s (back-dated by the issuer's skew)", cert.NotBefore, want)
	}
	// Without the attribute: the profile's maximum.
	cert = e.wantCert(e.post(e.appToken(), csrDER(t, key, testca.CSROptions{Subject: cn("plain")})))
	if want := end(e.profile.MaxValidity).Add(-5 * time.Minute); !cert.NotAfter.Equal(want) {
		t.Fatalf("NotAfter = %s, want %s", cert.NotAfter, want)
	}
	// A malformed request is a policy refusal.
	r := e.post(e.appToken(), csrWithValidity(t, key, cn("bad-validity"), "Fortnights", 2))
	wantProblem(t, r, http.StatusBadRequest, string(policy.CodeValidity))
}

// TestResponseFormats: DER by default, the PEM chain (leaf, then CA) or a certs-only PKCS#7 on request, with the
// serial in Location and X-Certificate-Serial.
func TestResponseFormats(t *testing.T) {
	e := newEnv(t)
	der := csrDER(t, ecKey(t, "response"), testca.CSROptions{Subject: cn("response-device")})
	tok := e.appToken()

	r := e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok)})
	cert := e.wantCert(r)
	serial := store.SerialString(cert.SerialNumber)
	if got := r.Header.Get("Location"); got != "/api/certificates/"+serial {
		t.Fatalf("Location = %q, want /api/certificates/%s", got, serial)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", got)
	}

	t.Run("PEM chain", func(t *testing.T) {
		r := e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok), accept: "application/x-pem-file"})
		if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pem-file" {
			t.Fatalf("status %d, Content-Type %q: %s", r.StatusCode, r.Header.Get("Content-Type"), r.body)
		}
		wantLength(t, r)
		var certs []*x509.Certificate
		for rest := r.body; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				if len(bytes.TrimSpace(rest)) != 0 {
					t.Fatalf("junk after the PEM blocks: %q", rest)
				}
				break
			}
			if b.Type != "CERTIFICATE" {
				t.Fatalf("PEM block %q, want CERTIFICATE", b.Type)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		}
		if len(certs) != 2 || !certs[0].Equal(cert) || !certs[1].Equal(e.ca.Cert) {
			t.Fatalf("PEM chain has %d certificates; want the leaf (retry of %s) then the CA", len(certs), serial)
		}
		if r.Header.Get("X-Certificate-Serial") != serial {
			t.Fatalf("X-Certificate-Serial = %q", r.Header.Get("X-Certificate-Serial"))
		}
	})

	t.Run("PKCS#7 certs-only", func(t *testing.T) {
		r := e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok),
			accept: "application/pkcs7-mime"})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", r.StatusCode, r.body)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/pkcs7-mime; smime-type=certs-only" {
			t.Fatalf("Content-Type = %q", ct)
		}
		wantLength(t, r)
		p7, err := mozpkcs7.Parse(r.body)
		if err != nil {
			t.Fatalf("response is not PKCS#7: %v", err)
		}
		if len(p7.Signers) != 0 || len(p7.Content) != 0 {
			t.Fatalf("certs-only PKCS#7 has %d signers and %d content bytes", len(p7.Signers), len(p7.Content))
		}
		if len(p7.Certificates) != 2 || !p7.Certificates[0].Equal(cert) || !p7.Certificates[1].Equal(e.ca.Cert) {
			t.Fatalf("PKCS#7 holds %d certificates; want the leaf then the CA", len(p7.Certificates))
		}
		if r.Header.Get("Location") != "/api/certificates/"+serial {
			t.Fatalf("Location = %q", r.Header.Get("Location"))
		}
	})

	t.Run("Accept negotiation", func(t *testing.T) {
		for accept, want := range map[string]string{
			"application/x-pem-file;q=0, application/pkix-cert":          "application/pkix-cert",
			"application/x-pem-file;q=0":                                 "application/pkix-cert",
			"application/pkix-cert;q=0.5, application/pkcs7-mime":        "application/pkcs7-mime; smime-type=certs-only",
			"text/html, application/x-pem-file; q=0.9":                   "application/x-pem-file",
			"application/pkcs7-mime;q=0.2, application/x-pem-file;q=0.8": "application/x-pem-file",
			"application/json": "application/pkix-cert",
		} {
			r := e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok), accept: accept})
			if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != want {
				t.Errorf("Accept %q: status %d, Content-Type %q; want %q", accept, r.StatusCode,
					r.Header.Get("Content-Type"), want)
			}
		}
	})

	t.Run("DER when Accept names something else", func(t *testing.T) {
		r := e.do(request{body: der, contentType: "application/pkcs10", auth: bearer(tok), accept: "*/*"})
		if c := e.wantCert(r); !c.Equal(cert) {
			t.Fatal("retry returned another certificate")
		}
	})
	if n := e.records(store.StatusIssued); n != 1 {
		t.Fatalf("issued records = %d after one request and its retries, want 1", n)
	}
}

func mustASN1(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
