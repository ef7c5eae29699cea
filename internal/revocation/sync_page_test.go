package revocation_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// downloadPage makes the fake's next download answer exactly items, as a hostile or broken Intune could.
func (f *fixture) downloadPage(t *testing.T, items ...intunefake.RevocationRequest) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"value": items})
	if err != nil {
		t.Fatal(err)
	}
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Times: 1, Body: string(raw)})
}

// TestSyncDuplicateRequestContextInOnePage: a page naming one requestContext twice. Only what was persisted is acted
// on: the first copy is stored, revoked and answered once; a second copy naming another serial is not a request we
// hold (its serial was never persisted), so that certificate stays issued, and the context is not answered twice.
func TestSyncDuplicateRequestContextInOnePage(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 2)
		first, second := recs[0], recs[1]
		const rc = "duplicate-context"
		route := func(serial string) intunefake.RevocationRequest {
			return intunefake.RevocationRequest{RequestContext: rc, SerialNumber: serial,
				IssuerName: f.ca.Cert.Subject.String(), CAConfiguration: f.caConfig}
		}
		f.downloadPage(t, route(first.Serial), route(first.Serial), route(second.Serial))
		run, _ := f.syncer(t, nil).Run(context.Background(), "timer")
		if run.Downloaded != 3 || run.Revoked != 1 || run.Uploaded != 1 {
			t.Errorf("run = %+v (errors %q), want 3 downloaded, 1 revoked, 1 uploaded", countsOf(run), run.Errors)
		}
		if r := f.record(t, first.Serial); r.Status != store.StatusRevoked || r.RevocationRef != rc {
			t.Errorf("the persisted request's certificate: %s ref %q, want revoked by it", r.Status, r.RevocationRef)
		}
		if r := f.record(t, second.Serial); r.Status != store.StatusIssued {
			t.Errorf("a certificate named only by an unpersisted duplicate was %s by %q", r.Status, r.RevokedBy)
		}
		if u := f.uploadsFor(rc); len(u) != 1 || !u[0].Succeeded {
			t.Errorf("uploads for the context = %+v, want one success", u)
		}
		if it, ok := f.st.item(rc); !ok || it.SerialNumber != first.Serial || it.State != store.WorkUploaded {
			t.Errorf("stored item = %+v (%t), want the first copy, uploaded", it, ok)
		}
	})
}

// cancelInFlight cancels the sync's caller once Intune has handed a download's requests over, while its answer is
// on the way: an admin who closes the console while the manual sync downloads. The answer is then lost as net/http
// loses one whose request context ends before it arrives, unless the request's context outlives the caller's.
type cancelInFlight struct {
	next   http.RoundTripper
	cancel context.CancelFunc
}

func (c cancelInFlight) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, string(intunefake.RouteDownload)) {
		return c.next.RoundTrip(r)
	}
	resp, err := c.next.RoundTrip(r.WithContext(context.WithoutCancel(r.Context())))
	c.cancel()
	if err == nil && r.Context().Err() != nil {
		resp.Body.Close()
		return nil, r.Context().Err()
	}
	return resp, err
}

// TestSyncCallerGoneDuringDownload: the caller goes away while Intune's download answer is on its way. Intune has
// handed the requests over (and offers nothing more for a while), so the download is finished and persisted all
// the same, as when the caller goes away right after it; the next run revokes and answers every request.
func TestSyncCallerGoneDuringDownload(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 2)
	var rcs []string
	for _, r := range recs {
		rcs = append(rcs, f.queue(t, r.Serial))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cred, err := intune.NewCredential(intune.CredentialConfig{Kind: intune.CredentialClientSecret, TenantID: f.fake.TenantID(),
		ClientID: f.fake.ClientID(), ClientSecret: f.fake.ClientSecret(), AuthorityHost: f.fake.AuthorityHost(),
		DisableInstanceDiscovery: true, HTTPClient: f.fake.Client(), Retry: policy.RetryOptions{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := intune.New(intune.Config{Credential: cred, TenantID: f.fake.TenantID(), ProviderNameAndVersion: "azscep-test/1.0",
		GraphBase: f.fake.GraphBase(), RetryBackoff: time.Millisecond,
		HTTPClient: &http.Client{Transport: cancelInFlight{next: f.fake.Client().Transport, cancel: cancel}}})
	if err != nil {
		t.Fatal(err)
	}
	run, _ := f.syncer(t, func(c *revocation.SyncConfig) { c.Intune = client }).Run(ctx, "admin")
	if run.Downloaded != 2 || run.Revoked != 0 || run.Uploaded != 0 {
		t.Errorf("run cut by its caller = %+v (errors %q), want 2 downloaded, nothing revoked or uploaded", countsOf(run), run.Errors)
	}
	if open, err := f.backend.OpenRevocations(context.Background(), 0); err != nil || len(open) != 2 {
		t.Fatalf("open items after the run cut by its caller: %d (%v), want the 2 Intune handed over", len(open), err)
	}

	before := f.clock.Now()
	run = f.run(t, f.syncer(t, nil)) // inside Intune's cool-down: only what we persisted can be finished
	wantRun(t, run, counts{Resumed: 2, Revoked: 2, Uploaded: 2})
	for i, rc := range rcs {
		f.wantRevokedByIntune(t, recs[i].Serial, rc, before, f.clock.Now())
	}
}

// TestSyncWhatAPageMayRevoke: what one download may revoke. A serial in any spelling Intune may echo (case, leading
// zeros, colons, spaces, 0x) names our record; two requests for one certificate revoke it once and both succeed; an
// expired certificate Intune got from us is revoked (Intune wants it gone, and the CRL drops it in time); the CA's
// own certificates (RA, OCSP responder), never reported to Intune, are refused with CertificateNotFoundError and
// stay issued. Unknown members of an item are ignored.
func TestSyncWhatAPageMayRevoke(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	recs := f.issue(t, 6)
	expired := recs[5]
	expired.NotAfter = f.clock.Now().Add(-time.Hour)
	if err := f.backend.Update(ctx, expired, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	own := map[string]*store.Record{}
	for _, source := range []string{revocation.SourceRA, revocation.SourceOCSP} {
		r := f.insert(t, store.StatusIssued, true, source+"-cert")
		r.Source, r.Endpoint, r.Profile, r.Requester, r.IntuneNotified, r.IntuneSerial, r.CAConfiguration =
			source, source, source, "azscep", false, "", ""
		if err := f.backend.Update(ctx, r, store.StatusIssued); err != nil {
			t.Fatal(err)
		}
		own[source] = r
	}
	colons := func(s string) string {
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%2 == 0 {
				b.WriteByte(':')
			}
			b.WriteRune(c)
		}
		return b.String()
	}
	spellings := map[string]string{
		"lower case":       strings.ToLower(recs[0].Serial),
		"leading zeros":    "0000" + recs[1].Serial,
		"colons":           colons(recs[2].Serial),
		"spaces":           " " + strings.ReplaceAll(colons(recs[3].Serial), ":", " ") + " ",
		"0x":               "0x" + recs[4].Serial,
		"expired":          expired.Serial,
		"second for one":   recs[0].Serial,
		"RA certificate":   own[revocation.SourceRA].Serial,
		"OCSP certificate": own[revocation.SourceOCSP].Serial,
	}
	var page []map[string]any
	for name, serial := range spellings {
		page = append(page, map[string]any{"requestContext": name, "serialNumber": serial, "issuerName": f.ca.Cert.Subject.String(),
			"caConfiguration": f.caConfig, "reason": "keyCompromise", "unknownMember": map[string]any{"x": 1}})
	}
	raw, err := json.Marshal(map[string]any{"value": page})
	if err != nil {
		t.Fatal(err)
	}
	f.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Times: 1, Body: string(raw)})
	run := f.run(t, f.syncer(t, nil))
	wantRun(t, run, counts{Downloaded: 9, Revoked: 6, NotFound: 2, Uploaded: 9})
	for name := range spellings {
		u := f.uploadsFor(name)
		refused := strings.HasSuffix(name, "certificate")
		if len(u) != 1 || u[0].Succeeded == refused || refused && u[0].ErrorCode != 4004 {
			t.Errorf("%s: uploaded %+v, want one %s", name, u, map[bool]string{true: "CertificateNotFoundError", false: "success"}[refused])
		}
	}
	for i, r := range recs {
		if got := f.record(t, r.Serial); got.Status != store.StatusRevoked || got.RevokedBy != "intune" || got.RevocationReason != revocation.IntuneReason {
			t.Errorf("certificate %d: %s by %q reason %d, want revoked by intune for cessationOfOperation", i, got.Status, got.RevokedBy, got.RevocationReason)
		}
	}
	for source, r := range own {
		if got := f.record(t, r.Serial); got.Status != store.StatusIssued {
			t.Errorf("the CA's %s certificate was %s by a request from Intune", source, got.Status)
		}
	}
	if n := len(f.notifiedSerials()); n != 6 {
		t.Errorf("OnRevoked told of %d serials, want 6 (one per certificate)", n)
	}
}

// TestSyncReofferNamingAnotherCertificate: Intune offers a request again, but naming another serial (or another CA)
// than the copy we persisted when it first came. What it names now was never persisted, so it is not acted on:
// that certificate stays issued, the request is not answered (an answer about the persisted copy would tell
// Intune the other certificate is revoked), and the run says why. An offer matching our copy is answered as usual.
func TestSyncReofferNamingAnotherCertificate(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		recs := f.issue(t, 3)
		rcSerial, rcRouting, rcSame := f.queue(t, recs[0].Serial), f.queueRaw(t, intunefake.RevocationRequest{
			SerialNumber: recs[1].Serial, CAConfiguration: "CN=Other CA"}), f.queue(t, recs[2].Serial)
		s := f.syncer(t, nil)
		wantRun(t, f.run(t, s), counts{Downloaded: 3, Foreign: 1, Revoked: 2, Uploaded: 2})
		other := f.insert(t, store.StatusIssued, true, "another-device")

		f.fake.Advance(61 * time.Minute)
		f.clock.Advance(61 * time.Minute)
		f.downloadPage(t,
			intunefake.RevocationRequest{RequestContext: rcSerial, SerialNumber: other.Serial, CAConfiguration: f.caConfig},
			intunefake.RevocationRequest{RequestContext: rcRouting, SerialNumber: recs[1].Serial, CAConfiguration: f.caConfig},
			intunefake.RevocationRequest{RequestContext: rcSame, SerialNumber: recs[2].Serial, IssuerName: f.ca.Cert.Subject.String(),
				CAConfiguration: f.caConfig})
		uploads := len(f.fake.UploadedResults())
		run, _ := s.Run(context.Background(), "timer")
		if run.Downloaded != 3 || run.Revoked != 0 || run.Failed != 2 || run.Uploaded != 1 {
			t.Errorf("run = %+v (errors %q), want 3 downloaded, 2 failed, 1 uploaded, nothing revoked", countsOf(run), run.Errors)
		}
		for _, r := range []*store.Record{other, recs[1]} {
			if got := f.record(t, r.Serial); got.Status != store.StatusIssued {
				t.Errorf("%s, named only by an offer contradicting the persisted request, was %s", got.Subject, got.Status)
			}
		}
		if got := f.fake.UploadedResults()[uploads:]; len(got) != 1 || got[0].RequestContext != rcSame || !got[0].Succeeded {
			t.Errorf("answers = %+v, want one success, for the offer matching our copy", got)
		}
		if !strings.Contains(strings.Join(run.Errors, "\n"), "contradicts") {
			t.Errorf("run errors %q do not say an offer contradicts the persisted request", run.Errors)
		}
	})
}

// TestSyncFailsClosed: when the Entra token, the Graph discovery or the download fails, or the download answer is
// not the documented shape, nothing is persisted, revoked or answered: no revocation comes from data Intune did not
// vouch for. The run returns and records the error.
func TestSyncFailsClosed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		route intunefake.Route
		fault intunefake.Fault
	}{
		{"token refused", intunefake.RouteToken, intunefake.Fault{Status: 401,
			Body: `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`}},
		{"discovery forbidden", intunefake.RouteDiscovery, intunefake.Fault{Status: 403,
			Body: `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}`}},
		{"download 401", intunefake.RouteDownload, intunefake.Fault{Status: 401, Body: `{}`}},
		{"download redirected", intunefake.RouteDownload, intunefake.Fault{Status: 307,
			Header: http.Header{"Location": {"https://attacker.example/download"}}}},
		{"download not JSON", intunefake.RouteDownload, intunefake.Fault{Body: `<html>sign in</html>`, ContentType: "text/html"}},
		{"download value not a list", intunefake.RouteDownload, intunefake.Fault{Body: `{"value":{"requestContext":"r"}}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOptions{})
			rec := f.issue(t, 1)[0]
			f.queue(t, rec.Serial)
			f.fake.InjectFault(tt.route, tt.fault)
			run, err := f.syncer(t, nil).Run(context.Background(), "timer")
			if err == nil || len(run.Errors) == 0 {
				t.Errorf("run = %+v, %v; want the failure returned and recorded", run, err)
			}
			if open, err := f.backend.OpenRevocations(context.Background(), 0); err != nil || len(open) != 0 {
				t.Errorf("persisted %d requests (%v), want none", len(open), err)
			}
			if got := f.record(t, rec.Serial); got.Status != store.StatusIssued {
				t.Errorf("certificate %s, want issued", got.Status)
			}
			if n := f.fake.Count(intunefake.RouteUpload); n != 0 {
				t.Errorf("%d uploads, want none", n)
			}
		})
	}
}
