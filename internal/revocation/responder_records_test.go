package revocation_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/ocsp"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// TestResponderCertificateIsRecorded: the delegated OCSP responder certificate is a certificate the CA signs, so
// it gets a pending record before the signature and an issued record before use; without a durable pending
// record the CA key is never called.
func TestResponderCertificateIsRecorded(t *testing.T) {
	ca := testca.New(t, testca.Options{})
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := ca.Issue(t, leafKey.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: "leaf"}})
	reqDER, err := xocsp.CreateRequest(leaf, ca.Cert, nil)
	if err != nil {
		t.Fatal(err)
	}

	fs := storetest.NewFaultStore(memstore.New())
	fs.FailMethod(storetest.MethodInsert, nil)
	signer := &testca.CountingSigner{Signer: ca.Key}
	r, err := ocsp.NewResponder(ca.Cert, signer, revocation.Status{Store: fs},
		ocsp.Options{Recorder: &revocation.ResponderRecords{Store: fs}, RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Respond(context.Background(), reqDER); err == nil {
		t.Fatal("a response was signed by a responder certificate that could not be recorded")
	}
	if n := signer.Calls(); n != 0 {
		t.Fatalf("the CA key signed %d times without a pending record", n)
	}

	fs.Clear()
	time.Sleep(5 * time.Millisecond) // past the renewal back-off
	body, err := r.Respond(context.Background(), reqDER)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := xocsp.ParseResponse(body, ca.Cert)
	if err != nil || resp.Certificate == nil {
		t.Fatalf("response: %v", err)
	}
	rec, err := fs.Inner().Get(context.Background(), store.SerialString(resp.Certificate.SerialNumber))
	if err != nil {
		t.Fatalf("responder certificate %s has no record: %v", resp.Certificate.SerialNumber, err)
	}
	if rec.Status != store.StatusIssued || string(rec.CertDER) != string(resp.Certificate.Raw) || rec.Source != "ocsp" {
		t.Fatalf("record = %+v", rec.Status)
	}
	if signer.Calls() != 1 {
		t.Fatalf("CA signatures = %d, want 1 (the responder certificate)", signer.Calls())
	}
}
