package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
)

// adminPost sends an admin API POST with a Certificates.Manage token and decodes the JSON answer into out.
func (e *fxEnv) adminPost(t *testing.T, path, body string, out any) int {
	t.Helper()
	tok := e.entra.MintUser(entrafake.NewGUID(), "secops@fault.test", []string{entra.RoleCertificatesManage},
		entrafake.WithClaim("azp", e.entra.ClientID)) // signed in to the console
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s = %d %s: %v", path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// TestIntuneRevokesOnlyIntuneIssued (issue 11, point 5) through the real handler: a certificate from the static
// endpoint and one from /api/csr are queued for revocation at Intune next to one Intune issued. The hourly sync
// revokes only the Intune one; the others stay issued, Intune gets CertificateNotFoundError (4004) for them, and
// each refusal is logged.
func TestIntuneRevokesOnlyIntuneIssued(t *testing.T) {
	e := newFxEnv(t, fxOptions{})
	static := e.send(t, e.scepRequest(t, fxEndpointStatic))
	viaIntune := e.send(t, e.scepRequest(t, fxEndpointIntune))
	viaAPI := e.send(t, e.csrRequest(t))
	for _, o := range []fxOutcome{static, viaIntune, viaAPI} {
		if !o.ok() {
			t.Fatalf("enrollment failed: %s", o)
		}
	}
	caConfig := intune.CAConfiguration(e.ca)
	queue := func(o fxOutcome) string {
		rc, err := e.intune.EnqueueRevocation(intunefake.RevocationRequest{SerialNumber: store.SerialString(o.cert.SerialNumber),
			IssuerName: e.ca.Subject.String(), CAConfiguration: caConfig})
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	rcIntune, rcStatic, rcAPI := queue(viaIntune), queue(static), queue(viaAPI)
	// For a serial not in our records: routed by our issuer's name alone (no caConfiguration, which every one of our
	// notifications carries), it is ours to answer; routed by the CA name alone as caConfiguration (a CA of the same
	// name elsewhere in the tenant, or one reported by an earlier version), it is left to that CA.
	unknown := "5C0123456789ABCDEF0123456789ABCDEF"
	rcByIssuer, err := e.intune.EnqueueRevocation(intunefake.RevocationRequest{SerialNumber: unknown,
		IssuerName: e.ca.Subject.String()})
	if err != nil {
		t.Fatal(err)
	}
	rcByName, err := e.intune.EnqueueRevocation(intunefake.RevocationRequest{SerialNumber: unknown,
		IssuerName: e.ca.Subject.String(), CAConfiguration: e.ca.Subject.String()})
	if err != nil {
		t.Fatal(err)
	}

	logs := postTimer(t, e.srv.Client(), e.srv.URL)
	if !strings.Contains(logs, "downloaded=5") || !strings.Contains(logs, "revoked=1") || !strings.Contains(logs, "not_found=3") ||
		!strings.Contains(logs, "foreign=1") {
		t.Fatalf("sync summary:\n%s", logs)
	}
	uploaded := map[string]intunefake.UploadedResult{}
	for _, u := range e.intune.UploadedResults() {
		uploaded[u.RequestContext] = u
	}
	if u := uploaded[rcIntune]; !u.Succeeded {
		t.Errorf("the Intune certificate: uploaded %+v, want success", u)
	}
	if u, ok := uploaded[rcByIssuer]; !ok || u.Succeeded || u.ErrorCode != 4004 {
		t.Errorf("an unknown serial routed by our issuer: uploaded %+v (%t), want CertificateNotFoundError (4004)", u, ok)
	}
	if u, ok := uploaded[rcByName]; ok {
		t.Errorf("an unknown serial routed by the CA name alone was answered: %+v", u)
	}
	ctx := context.Background()
	if rec, err := e.base.Get(ctx, store.SerialString(viaIntune.cert.SerialNumber)); err != nil || rec.Status != store.StatusRevoked {
		t.Errorf("the Intune certificate: %v %v, want revoked", rec.Status, err)
	}
	refusals := e.logs.Records("intune revocation refused: certificate not issued through Intune")
	for name, c := range map[string]struct {
		o  fxOutcome
		rc string
	}{"static": {static, rcStatic}, "api": {viaAPI, rcAPI}} {
		serial := store.SerialString(c.o.cert.SerialNumber)
		if u := uploaded[c.rc]; u.Succeeded || u.ErrorCode != 4004 {
			t.Errorf("%s certificate: uploaded %+v, want CertificateNotFoundError (4004)", name, u)
		}
		if rec, err := e.base.Get(ctx, serial); err != nil || rec.Status != store.StatusIssued {
			t.Errorf("%s certificate: %v %v, want still issued", name, rec.Status, err)
		}
		found := false
		for _, l := range refusals {
			found = found || l["serial"] == serial
		}
		if !found {
			t.Errorf("%s certificate: no refusal logged for %s", name, serial)
		}
	}
}

// cancelOnDownload cancels the request being served as soon as Intune's download answer has arrived (its body
// read first), the way an admin client that disconnects or the host's deadline would.
type cancelOnDownload struct {
	next  http.RoundTripper
	env   func() *fxEnv
	armed atomic.Bool
}

func (c *cancelOnDownload) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || !c.armed.Load() || !strings.Contains(r.URL.Path, string(intunefake.RouteDownload)) {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		return nil, rerr
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c.env().cancelRequest()
	return resp, nil
}

// TestManualSyncCancelledAfterDownload (issue 11, point 6): an admin starts the revocation sync and the request
// is cancelled right after Intune's download. The downloaded requests are persisted all the same; the next manual
// run — inside Intune's cool-down, so its download brings nothing — resumes and finishes them.
func TestManualSyncCancelledAfterDownload(t *testing.T) {
	var env *fxEnv
	rt := &cancelOnDownload{env: func() *fxEnv { return env }}
	env = newFxEnv(t, fxOptions{httpWrap: func(next http.RoundTripper) http.RoundTripper { rt.next = next; return rt }})
	var serials []string
	for range 2 {
		o := env.send(t, env.scepRequest(t, fxEndpointIntune))
		if !o.ok() {
			t.Fatalf("enrollment failed: %s", o)
		}
		serial := store.SerialString(o.cert.SerialNumber)
		if _, err := env.intune.RevokeIssued(serial); err != nil {
			t.Fatal(err)
		}
		serials = append(serials, serial)
	}

	rt.armed.Store(true)
	var first struct{ Downloaded, Revoked, Uploaded int }
	env.adminPost(t, "/api/certificates/revocation-sync", "", &first)
	rt.armed.Store(false)
	if first.Downloaded != 2 || first.Revoked != 0 || first.Uploaded != 0 {
		t.Fatalf("cancelled run = %+v, want 2 downloaded, nothing revoked or uploaded", first)
	}
	open, err := env.base.OpenRevocations(context.Background(), 0)
	if err != nil || len(open) != 2 {
		t.Fatalf("persisted open requests = %d (%v), want 2", len(open), err)
	}

	var second struct{ Resumed, Downloaded, Revoked, Uploaded int }
	if code := env.adminPost(t, "/api/certificates/revocation-sync", "", &second); code != http.StatusOK {
		t.Fatalf("second manual sync = %d", code)
	}
	if second.Resumed != 2 || second.Downloaded != 0 || second.Revoked != 2 || second.Uploaded != 2 {
		t.Fatalf("resumed run = %+v, want 2 resumed, revoked and uploaded", second)
	}
	for _, s := range serials {
		if rec, err := env.base.Get(context.Background(), s); err != nil || rec.Status != store.StatusRevoked || rec.RevokedBy != "intune" {
			t.Errorf("%s: %v %v, want revoked by intune", s, rec.Status, err)
		}
	}
	if n := env.intune.Count(intunefake.RouteDownload); n != 2 {
		t.Errorf("downloads = %d, want one per run", n)
	}
}
