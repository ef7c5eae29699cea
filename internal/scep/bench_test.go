package scep_test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/testca"
)

// The benchmarks below measure the server's own work per enrollment, outside the RSA private-key operations
// where they can: compare them with -benchmem (allocations are deterministic on a noisy machine).

// benchRequests builds n PKCSReqs for endpoint epStatic from distinct fixture keys (n ≤ testca.DeviceKeys).
func benchRequests(b *testing.B, e *env, n int) []*testca.Request {
	b.Helper()
	reqs := make([]*testca.Request, n)
	for i := range reqs {
		c := e.client(b, i, "bench-device")
		reqs[i] = c.PKCSReq(b, csrFor(b, c, "bench-device"))
	}
	return reqs
}

// BenchmarkPKIOperation is one enrollment through Server.ServeHTTP (no network): parse, decrypt, policy, issue
// into a memstore, CertRep, log (JSON, discarded). Every testca.DeviceKeys requests get a fresh server and store,
// outside the timed part, so each one is a new enrollment, not a replay.
func BenchmarkPKIOperation(b *testing.B) {
	var reqs []*testca.Request
	var e *env
	b.ReportAllocs()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		k := i % testca.DeviceKeys
		if k == 0 {
			e = newEnv(b, envOptions{})
			if reqs == nil {
				reqs = benchRequests(b, e, testca.DeviceKeys)
			}
		}
		r := httptest.NewRequest(http.MethodPost, "/api/scep/"+epStatic+"?operation=PKIOperation",
			bytes.NewReader(reqs[k].Raw))
		r.Header.Set("Content-Type", "application/x-pki-message")
		w := httptest.NewRecorder()
		b.StartTimer()
		e.srv.ServeHTTP(w, r)
		b.StopTimer()
		if w.Code != http.StatusOK {
			b.Fatalf("HTTP %d %q", w.Code, w.Body.Bytes())
		}
		if i < testca.DeviceKeys {
			wantSuccess(b, reqs[k].ParseCertRep(b, w.Body.Bytes(), e.ca.Recipient()))
		}
	}
}

// BenchmarkParsePKIMessage is the outer parse and signature check of a PKCSReq (one RSA public-key operation).
func BenchmarkParsePKIMessage(b *testing.B) {
	e := newEnv(b, envOptions{})
	raw := benchRequests(b, e, 1)[0].Raw
	b.ReportAllocs()
	for b.Loop() {
		m, err := scep.ParsePKIMessage(raw)
		if err != nil || !m.SignatureValid {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecrypt opens the envelope of a parsed PKCSReq (one RSA private-key operation).
func BenchmarkDecrypt(b *testing.B) {
	e := newEnv(b, envOptions{})
	m, err := scep.ParsePKIMessage(benchRequests(b, e, 1)[0].Raw)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Decrypt(e.ca.RACert, e.ca.RAKey); err != nil {
			b.Fatal(err)
		}
	}
}

// fixedSigner returns a constant RSA-2048-sized signature: CertRep's encoding work without the private-key
// operation.
type fixedSigner struct{ crypto.Signer }

func (s fixedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return make([]byte, 256), nil
}

// BenchmarkCertRep builds a SUCCESS CertRep (envelope to the client, SignedData) with a signer that does no RSA.
func BenchmarkCertRep(b *testing.B) {
	e := newEnv(b, envOptions{})
	req := benchRequests(b, e, 1)[0]
	m, err := scep.ParsePKIMessage(req.Raw)
	if err != nil {
		b.Fatal(err)
	}
	leaf := e.ca.Issue(b, req.SignerKey.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: "bench-device"}})
	o := scep.CertRepOptions{Status: scep.StatusSuccess, Certs: []*x509.Certificate{leaf},
		SignerCert: e.ca.RACert, SignerKey: fixedSigner{e.ca.RAKey}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.CertRep(o); err != nil {
			b.Fatal(err)
		}
	}
}
