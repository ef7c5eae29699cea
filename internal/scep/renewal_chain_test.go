package scep_test

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

const day = 24 * time.Hour

// twoEndpoints is epStatic with chain maximum staticMax and epChain with chainMax, each renewing the
// certificates of the endpoints listed for it.
func twoEndpoints(t *testing.T, staticMax, chainMax time.Duration, staticFrom, chainFrom []string) []*scep.Endpoint {
	return []*scep.Endpoint{
		{Name: epStatic, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t),
			RenewalMax: staticMax, RenewFrom: staticFrom},
		{Name: epChain, Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret), Profile: testProfile(t),
			RenewalMax: chainMax, RenewFrom: chainFrom},
	}
}

// renewedTo sends d's renewal for key n to endpoint with the server's clock at the given offset, and returns the
// renewal as the next link of the chain. The issuer's clock stays: every certificate starts now, and one that
// ends before the profile's 30 days ends at its chain's end.
func renewedTo(t *testing.T, e *env, endpoint string, d enrolled, n int, at time.Duration) (enrolled, *store.Record) {
	t.Helper()
	e.offset.Store(int64(at))
	cert := wantSuccess(t, renewWith(t, e, endpoint, d, named, n))
	rec, err := e.mem.Get(context.Background(), hexSerial(cert))
	if err != nil {
		t.Fatal(err)
	}
	return enrolled{client: e.client(t, n, named.Subject.CommonName), cert: cert}, rec
}

// firstRecord is the record of c, the first certificate of a chain.
func firstRecord(t *testing.T, e *env, c *x509.Certificate) *store.Record {
	t.Helper()
	rec, err := e.mem.Get(context.Background(), hexSerial(c))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestRenewalChainMaximumAcrossEndpoints: a chain started at an endpoint with a short maximum and renewed at one
// that lists it in renew_from (with a long maximum) ends by the first endpoint's maximum, and so do later renewals
// at the second endpoint: the endpoint that authorized the names bounded how long they renew.
func TestRenewalChainMaximumAcrossEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoints: twoEndpoints(t, 20*day, 365*day, nil, []string{epStatic})})
	d := enrollNamed(t, e, epStatic, 0, named)
	end := firstRecord(t, e, d.cert).Created.Add(20 * day)

	d1, rec1 := renewedTo(t, e, epChain, d, 7, 16*day)
	if d1.cert.NotAfter.After(end) {
		t.Fatalf("renewal at %s ends %v, past the chain's end %v under %s", epChain, d1.cert.NotAfter, end, epStatic)
	}
	if !rec1.ChainEnds.Equal(end) {
		t.Fatalf("renewal record chain_ends %v, want %v", rec1.ChainEnds, end)
	}

	d2, rec2 := renewedTo(t, e, epChain, d1, 8, 17*day)
	if d2.cert.NotAfter.After(end) {
		t.Fatalf("second renewal at %s ends %v, past the chain's end %v under %s", epChain, d2.cert.NotAfter, end,
			epStatic)
	}
	if !rec2.ChainEnds.Equal(end) {
		t.Fatalf("second renewal record chain_ends %v, want %v", rec2.ChainEnds, end)
	}
}

// TestRenewalPastTheFirstEndpointsMaximumRefused: past the maximum of the endpoint that issued it, a certificate
// still valid and inside its renewal window does not renew at an endpoint with a longer maximum.
func TestRenewalPastTheFirstEndpointsMaximumRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoints: twoEndpoints(t, 20*day, 365*day, nil, []string{epStatic})})
	d := enrollNamed(t, e, epStatic, 0, named)
	e.offset.Store(int64(21 * day)) // the certificate (30 days) is valid and in its window; the chain (20) is over
	wantFailure(t, renewWith(t, e, epChain, d, named), testca.FailBadRequest)
	if n := e.countStatus(t, store.StatusIssued); n != 1 {
		t.Fatalf("%d issued records, want 1", n)
	}
}

// TestRenewalChainBackToTheLongerEndpoint: a chain started at the endpoint with the long maximum and renewed at
// one with a short maximum passed through that one: renewed back at the first endpoint, it still ends by the
// short maximum.
func TestRenewalChainBackToTheLongerEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoints: twoEndpoints(t, 20*day, 365*day, []string{epChain}, []string{epStatic})})
	d := enrollNamed(t, e, epChain, 0, named)
	end := firstRecord(t, e, d.cert).Created.Add(20 * day)

	d1, _ := renewedTo(t, e, epStatic, d, 7, 16*day)
	if d1.cert.NotAfter.After(end) {
		t.Fatalf("renewal at %s ends %v, past its maximum %v", epStatic, d1.cert.NotAfter, end)
	}
	d2, rec2 := renewedTo(t, e, epChain, d1, 8, 17*day)
	if d2.cert.NotAfter.After(end) {
		t.Fatalf("renewal back at %s ends %v, past the end %v set at %s", epChain, d2.cert.NotAfter, end, epStatic)
	}
	if !rec2.ChainEnds.Equal(end) {
		t.Fatalf("renewal record chain_ends %v, want %v", rec2.ChainEnds, end)
	}
}

// TestRenewalChainRecordWithoutChainEnds: a renewal recorded before chains carried their end (no chain_ends)
// renews as it did then, bounded by its own endpoint's maximum: neither refused nor cut short for the missing
// field.
func TestRenewalChainRecordWithoutChainEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoints: twoEndpoints(t, 20*day, 25*day, nil, []string{epStatic})})
	d := enrollNamed(t, e, epStatic, 0, named)
	start := firstRecord(t, e, d.cert).Created

	d1, rec1 := renewedTo(t, e, epChain, d, 7, 16*day)
	rec1.ChainEnds = time.Time{} // as a record written before the field was kept
	if err := e.mem.Update(context.Background(), rec1, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	d2, rec2 := renewedTo(t, e, epChain, d1, 8, 17*day)
	if end := start.Add(25 * day); d2.cert.NotAfter.After(end) {
		t.Fatalf("renewal ends %v, past %s's chain end %v", d2.cert.NotAfter, epChain, end)
	}
	if !rec2.ChainStarted.Equal(start) {
		t.Fatalf("renewal record chain_started %v, want %v", rec2.ChainStarted, start)
	}
}
