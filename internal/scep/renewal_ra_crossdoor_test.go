package scep_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestRenewalRefusesEveryRACertificate: an RA certificate is never a renewal signer, whichever RA it is. The RA in
// use is not always the one loaded at start-up (the timer's renewal is installed while running), an RA from an
// earlier rotation is not in memory at all, and an RA from before RAs were restricted to the Certificate Request
// Agent EKU carries clientAuth. Each one below is given a record that makes it look like one of the endpoint's own
// certificates, so that only the certificate-kind checks stand between it and a client certificate; with the
// Certificate Request Agent EKU alone, a renewal would also have come back with no EKU at all, which relying
// parties read as valid for every purpose.
func TestRenewalRefusesEveryRACertificate(t *testing.T) {
	t.Parallel()
	type signer struct {
		cert *x509.Certificate
		key  *rsa.PrivateKey
	}
	cases := map[string]func(t *testing.T, ca *testca.CA) signer{
		// An RA of an earlier rotation, past its overlap: nothing in memory names it.
		"an earlier RA": func(t *testing.T, ca *testca.CA) signer {
			key := testca.RSAKey(t, 5)
			cert, err := custody.IssueRACertificate(context.Background(), nil, ca.Cert, ca.Key, key.Public(),
				"azscep SCEP RA", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return signer{cert, key}
		},
		// An RA from before the EKU restriction, installed by a rotation while running.
		"the RA installed while running": func(t *testing.T, ca *testca.CA) signer {
			key := testca.RSAKey(t, 6)
			cert := ca.Issue(t, key.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: "azscep SCEP RA"},
				KeyUsage:  x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUse: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if err := ca.Keys.SetRA(custody.RA{Cert: cert, Key: key}, nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			return signer{cert, key}
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ca := testca.New(t, testca.Options{}) // its own: SetRA changes the CA's keys
			e := newEnv(t, envOptions{ca: ca, endpoints: []*scep.Endpoint{{Name: epStatic, Challenge: scep.ChallengeStatic,
				Secret: []byte(staticSecret), Profile: testProfile(t), RenewalWindow: 100 * 365 * 24 * time.Hour}}})
			s := build(t, ca)
			now := time.Now()
			if err := e.mem.Insert(context.Background(), &store.Record{Serial: hexSerial(s.cert), Status: store.StatusIssued,
				Source: store.SourceSCEP, Endpoint: epStatic, CertDER: s.cert.Raw, NotBefore: s.cert.NotBefore,
				NotAfter: s.cert.NotAfter, Created: now, Updated: now}); err != nil {
				t.Fatal(err)
			}
			ra, _ := ca.Keys.RA() // what the client encrypts to and what signs the CertRep
			csr := testca.CSR(t, testca.RSAKey(t, 7), testca.CSROptions{Subject: s.cert.Subject})
			c := &testca.Client{Key: s.key, Cert: s.cert, Recipients: []*x509.Certificate{ra}}
			req := c.RenewalReq(t, csr, s.cert, s.key)
			resp, body := testca.Post(t, e.url(epStatic), req.Raw)
			if resp.StatusCode != 200 {
				t.Fatalf("PKIOperation: HTTP %d %q", resp.StatusCode, body)
			}
			rep := req.ParseCertRep(t, body, ra)
			if rep.Status != testca.StatusFailure || rep.FailInfo != testca.FailBadRequest {
				if c := rep.Certificate(); c != nil {
					t.Errorf("issued %v, key usage %b, EKU %v, unknown EKU %v", c.Subject, c.KeyUsage, c.ExtKeyUsage,
						c.UnknownExtKeyUsage)
				}
				t.Fatalf("renewal signed by %s: status %q failInfo %q, want FAILURE badRequest", name, rep.Status, rep.FailInfo)
			}
			if n := e.countStatus(t, store.StatusIssued); n != 1 {
				t.Fatalf("%d issued records, want only the planted one", n)
			}
		})
	}
}
