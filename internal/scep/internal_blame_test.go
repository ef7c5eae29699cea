package scep_test

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// TestServerFailureIsNot400: a failure of the server's own that is not an outage it knows — the store refusing a
// write or a read with an error it does not classify as unavailable, a stored certificate that does not parse —
// answers HTTP 500 with no CertRep, on an enrollment and on a CertPoll. A CertRep FAILURE badRequest would tell the device that its request was wrong and
// make it give up on a request nothing was wrong with. Refusals of the request that reach the same mapping (here
// a renewal signed by a certificate this CA never issued) stay FAILURE badRequest.
func TestServerFailureIsNot400(t *testing.T) {
	t.Parallel()
	odd := errors.New("table refused the entity: 400 InvalidInput")
	var fs *storetest.FaultStore
	e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store {
		fs = storetest.NewFaultStore(s)
		return fs
	}})
	wantInternal := func(t *testing.T, what string, req *testca.Request) {
		t.Helper()
		resp, body := testca.Post(t, e.url(epStatic), req.Raw)
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Type") == "application/x-pki-message" {
			t.Fatalf("%s: HTTP %d %s (%d bytes), want 500 and no CertRep", what, resp.StatusCode,
				resp.Header.Get("Content-Type"), len(body))
		}
	}

	c := e.client(t, 0, "odd-store")
	csr := csrFor(t, c, "odd-store")
	fs.Inject(storetest.Fault{Method: storetest.MethodInsertBound, Err: odd})
	wantInternal(t, "enrollment", c.PKCSReq(t, csr))
	fs.Clear()
	if n := e.countStatus(t, store.StatusIssued); n != 0 {
		t.Fatalf("%d issued records after the refused insert", n)
	}

	// The device comes back: it enrolls, and a CertPoll the store cannot answer is the server's failure too.
	wantSuccess(t, e.pki(t, epStatic, c.PKCSReq(t, csr)))
	poll := func() *testca.Request {
		return c.CertPoll(t, testca.TransactionID(t, csr.PublicKey), e.ca.Cert, csr.Subject)
	}
	fs.Inject(storetest.Fault{Method: storetest.MethodLookup, Err: odd})
	wantInternal(t, "CertPoll", poll())
	fs.Clear()

	// So is a record whose certificate no longer parses: its holder's CertPoll is not told it asked for nothing.
	recs := e.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records, want the enrollment's one", len(recs))
	}
	recs[0].CertDER = recs[0].CertDER[:len(recs[0].CertDER)/2]
	if err := e.mem.Update(context.Background(), recs[0], store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	wantInternal(t, "CertPoll of a damaged record", poll())

	// A refusal of the request is still the request's answer: a RenewalReq (without a challenge to fall back on)
	// signed with a certificate this CA never issued.
	d := e.client(t, 1, "stranger")
	renew := testca.CSR(t, d.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "stranger"}})
	wantFailure(t, e.pki(t, epStatic, d.RenewalReq(t, renew, d.Cert, d.Key)), testca.FailBadRequest)
}
