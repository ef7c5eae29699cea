package revocation_test

import (
	"context"
	"crypto/x509/pkix"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/memstore"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// TestSyncTwoCAsOfOneName: two deployments serve one Intune tenant, each with its own CA key under the default
// CA name (the azd environments "dev" and "prod", say). Intune queues the revocation of B's certificate, and A
// polls first. The caConfiguration each reports carries its key as well as its name, so A sees a request for
// another CA and keeps it unanswered, and B revokes its certificate when it polls. With the name alone, A
// answered "certificate not found", Intune dropped the request, and B's certificate stayed valid. A request routed
// by the name alone (a certificate reported before the key was part of it) still revokes A's own record, and is
// left to the other CA when the serial is not A's.
func TestSyncTwoCAsOfOneName(t *testing.T) {
	ctx := context.Background()
	name := pkix.Name{CommonName: "azscep CA", Organization: []string{"azscep"}}
	a := newFixture(t, fixtureOptions{})
	caA := testca.New(t, testca.Options{Subject: name})
	a.ca, a.caConfig = caA, intune.CAConfiguration(caA.Cert)
	own := a.issue(t, 2)

	caB := testca.New(t, testca.Options{Subject: name})
	configB := intune.CAConfiguration(caB.Cert)
	if configB == a.caConfig || !strings.HasPrefix(configB, caB.Cert.Subject.String()+" ") {
		t.Fatalf("caConfiguration of two CAs of one name: %q and %q; want the name and different keys", a.caConfig, configB)
	}
	storeB := memstore.New()
	certB := caB.Issue(t, a.leafKey.Public(), testca.LeafOptions{Subject: pkix.Name{CommonName: "device-b"}})
	serialB := store.SerialString(certB.SerialNumber)
	if err := storeB.Insert(ctx, &store.Record{Serial: serialB, Status: store.StatusIssued, Issuer: caB.Cert.Subject.String(),
		Subject: certB.Subject.String(), NotBefore: certB.NotBefore, NotAfter: certB.NotAfter, Source: store.SourceSCEP,
		Endpoint: "intune", Requester: "scep:intune", Profile: "intune", IntuneSerial: serialB, CAConfiguration: configB,
		IntuneNotified: true, CertDER: certB.Raw}); err != nil {
		t.Fatal(err)
	}
	rcB := a.queueRaw(t, intunefake.RevocationRequest{SerialNumber: serialB, IssuerName: name.String(), CAConfiguration: configB})

	// Routed by the name alone: a legacy record of A's (reported before the key was part of caConfiguration) and a
	// serial A does not hold.
	legacy := own[1]
	legacy.CAConfiguration = name.String()
	if err := a.backend.Update(ctx, legacy, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	rcLegacy := a.queueRaw(t, intunefake.RevocationRequest{SerialNumber: legacy.Serial, IssuerName: name.String(),
		CAConfiguration: name.String()})
	rcUnknown := a.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "5C0123456789ABCDEF0123456789ABCDEF",
		IssuerName: name.String(), CAConfiguration: name.String()})

	wantRun(t, a.run(t, a.syncer(t, nil)), counts{Downloaded: 3, Foreign: 2, Revoked: 1, Uploaded: 1})
	for _, rc := range []string{rcB, rcUnknown} {
		if u := a.uploadsFor(rc); len(u) != 0 {
			t.Errorf("A answered a request it cannot tell is its own: %+v", u)
		}
		if st := a.workState(t, rc); st != store.WorkForeign {
			t.Errorf("request %s is %s at A, want foreign", rc, st)
		}
	}
	if u := a.uploadsFor(rcLegacy); len(u) != 1 || !u[0].Succeeded {
		t.Errorf("A's legacy record's request: uploads %+v, want one success", u)
	}

	// B polls the same tenant after Intune's cool-down and revokes its certificate.
	a.fake.Advance(61 * time.Minute)
	a.clock.Advance(61 * time.Minute)
	syncB, err := revocation.NewSyncer(revocation.SyncConfig{Store: storeB, Intune: a.client, CAConfiguration: configB,
		IssuerName: name.String(), Logger: slog.New(slog.DiscardHandler), Now: a.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncB.Run(ctx, "timer"); err != nil {
		t.Fatal(err)
	}
	if got, err := storeB.Get(ctx, serialB); err != nil || got.Status != store.StatusRevoked {
		t.Fatalf("B's certificate after both synced: %+v, %v; want revoked", got, err)
	}
	if u := a.uploadsFor(rcB); len(u) != 1 || !u[0].Succeeded {
		t.Errorf("B's answer to its request: %+v, want one success", u)
	}
}

// TestSyncForeignItemDuringStoreTrouble: a request routed to another CA arrives while the record read fails. Whether
// its serial is ours is unknown, so nothing is said to Intune about it (a retryable answer would be an answer about
// another CA's certificate): it stays downloaded, and the next run, with the store back, keeps it as foreign.
func TestSyncForeignItemDuringStoreTrouble(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rc := f.queueRaw(t, intunefake.RevocationRequest{SerialNumber: "0ABCDEF012345678", IssuerName: "CN=Other CA",
		CAConfiguration: "CN=Other CA (key 0011223344556677)"})
	f.faults.FailMethod(storetest.MethodGet, nil)
	run := f.run(t, f.syncer(t, nil))
	if u := f.uploadsFor(rc); len(u) != 0 {
		t.Fatalf("another CA's request was answered during store trouble: %+v (errors %q)", u, run.Errors)
	}
	if st := f.workState(t, rc); st != store.WorkDownloaded {
		t.Fatalf("the request is %s, want downloaded for the next run", st)
	}
	f.faults.Clear()
	wantRun(t, f.run(t, f.syncer(t, nil)), counts{Resumed: 1, Foreign: 1})
	if u := f.uploadsFor(rc); len(u) != 0 || f.workState(t, rc) != store.WorkForeign {
		t.Fatalf("after the store came back: uploads %+v, state %s; want none and foreign", u, f.workState(t, rc))
	}
}
