package scep_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// TestRenewalReqWithChallengeEnrollsAfresh: clients such as micromdm's scepclient send a RenewalReq whenever they
// hold a certificate, and put the challenge in its CSR too. When that certificate cannot authorize a renewal (it
// was revoked, or came from another CA, a previous one say), the right static challenge does: the request
// is an enrollment like a PKCSReq (no lineage, the endpoint's requester), instead of a refusal the device repeats
// forever. A wrong challenge is refused as at a PKCSReq, and without one the renewal's refusal stands.
func TestRenewalReqWithChallengeEnrollsAfresh(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		offset  time.Duration
		prepare func(t *testing.T, e *env, d enrolled) *x509.Certificate
	}{
		// Refused after the request's usages were narrowed to the old certificate's (digitalSignature only): the
		// enrollment gets what the CSR asks of the profile, not the narrowed set.
		{"past the chain's maximum", profileValidity / 2, nil},
		{"revoked", profileValidity / 2, func(t *testing.T, e *env, d enrolled) *x509.Certificate {
			e.revoke(t, d.cert)
			return d.cert
		}},
		{"from another CA", profileValidity / 2, func(t *testing.T, e *env, d enrolled) *x509.Certificate {
			previous := testca.New(t, testca.Options{Subject: pkix.Name{CommonName: "previous CA"}})
			return previous.Issue(t, d.client.Key.Public(), testca.LeafOptions{Subject: d.cert.Subject})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{endpoints: []*scep.Endpoint{{Name: epStatic, Challenge: scep.ChallengeStatic,
				Secret: []byte(staticSecret), Profile: testProfile(t), RenewalMax: time.Hour}}})
			c := e.client(t, 0, "renew-me")
			d := enrolled{client: c, cert: wantSuccess(t, e.pki(t, epStatic, c.PKCSReq(t, testca.CSR(t, c.Key,
				testca.CSROptions{Subject: pkix.Name{CommonName: "renew-me"}, ChallengePassword: staticSecret,
					KeyUsage: x509.KeyUsageDigitalSignature}))))}
			signer := d.cert
			if tc.prepare != nil {
				signer = tc.prepare(t, e, d)
			}
			e.offset.Store(int64(tc.offset))
			renew := func(key int, pw string) *testca.CertRep {
				t.Helper()
				csr := testca.CSR(t, testca.RSAKey(t, key),
					testca.CSROptions{Subject: pkix.Name{CommonName: "renew-me"}, ChallengePassword: pw})
				return e.pki(t, epStatic, d.client.RenewalReq(t, csr, signer, d.client.Key))
			}
			wantFailure(t, renew(7, ""), testca.FailBadRequest)
			wantFailure(t, renew(8, "not-the-challenge"), testca.FailBadRequest)
			if n := len(e.records(t)); n != 1 {
				t.Fatalf("%d records after refused renewals, want only the original", n)
			}
			cert := wantSuccess(t, renew(9, staticSecret))
			rec, err := e.mem.Get(context.Background(), hexSerial(cert))
			if err != nil {
				t.Fatal(err)
			}
			if rec.RenewedFrom != "" || rec.Requester != "scep:static" || !testca.RSAKey(t, 9).PublicKey.Equal(cert.PublicKey) {
				t.Fatalf("record renewed_from %q requester %q: want a fresh enrollment for the new key", rec.RenewedFrom, rec.Requester)
			}
			if rec.Status != store.StatusIssued {
				t.Fatalf("record status %s", rec.Status)
			}
			if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; cert.KeyUsage != want {
				t.Fatalf("key usage %b, want the profile's %b", cert.KeyUsage, want)
			}
		})
	}
}

// TestEarlyRenewalReqWithChallengeRefused: a renewal that is only early is refused with or without the challenge; it
// succeeds in its window (an enrollment per run of a client that renews from cron would churn certificates).
func TestEarlyRenewalReqWithChallengeRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	d := enroll(t, e, 0, "renew-me")
	e.offset.Store(int64(25 * time.Hour)) // past the replay window, before the renewal window
	csr := testca.CSR(t, d.client.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "renew-me"}, ChallengePassword: staticSecret})
	wantFailure(t, e.pki(t, epStatic, d.client.RenewalReq(t, csr, d.cert, d.client.Key)), testca.FailBadRequest)
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("%d records after an early renewal, want only the original", n)
	}
}
