package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/entra"
	"github.com/azscep/azscep/internal/entra/entrafake"
	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/store"
)

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

// gateDownload holds Intune's download until the test opens the gate.
type gateDownload struct {
	next          http.RoundTripper
	entered, gate chan struct{}
	once          sync.Once
}

func (g *gateDownload) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.Path, string(intunefake.RouteDownload)) {
		g.once.Do(func() { close(g.entered) })
		select {
		case <-g.gate:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return g.next.RoundTrip(r)
}

// adminDo sends an admin API request with a Certificates.Manage token.
func (e *fxEnv) adminDo(t *testing.T, method, path string) (*http.Response, []byte) {
	t.Helper()
	tok := e.entra.MintUser(entrafake.NewGUID(), "secops@fault.test", []string{entra.RoleCertificatesManage},
		entrafake.WithClaim("azp", e.entra.ClientID))
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// TestManualSyncOutlivesItsRequest (issue 11, point 6, and the host's 230 s cut of a request): an admin starts the
// revocation sync while Intune's download is slow. The POST is answered 202 at once, with the run's status in
// Location, and its request ends; the run goes on regardless, and once Intune answers it revokes and answers every
// request. The status, polled as a client would, says running and then gives the outcome.
func TestManualSyncOutlivesItsRequest(t *testing.T) {
	gate := &gateDownload{entered: make(chan struct{}), gate: make(chan struct{})}
	env := newFxEnv(t, fxOptions{httpWrap: func(next http.RoundTripper) http.RoundTripper { gate.next = next; return gate }})
	t.Cleanup(func() {
		select {
		case <-gate.gate:
		default:
			close(gate.gate)
		}
	})
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

	type answer struct {
		resp *http.Response
		body []byte
	}
	answered := make(chan answer, 1)
	go func() {
		resp, body := env.adminDo(t, http.MethodPost, "/api/certificates/revocation-sync")
		answered <- answer{resp, body}
	}()
	<-gate.entered
	var a answer
	select {
	case a = <-answered:
	case <-time.After(20 * time.Second): // a failure guard only: the answer does not wait for the run
		t.Fatal("POST revocation-sync did not answer while the run waited on Intune")
	}
	loc := a.resp.Header.Get("Location")
	var started struct{ ID, State string }
	if a.resp.StatusCode != http.StatusAccepted || json.Unmarshal(a.body, &started) != nil || started.State != "running" ||
		loc != "/api/certificates/revocation-sync/"+started.ID {
		t.Fatalf("POST = %d %s (Location %q), want 202 with the running run", a.resp.StatusCode, a.body, loc)
	}
	env.cancelRequest() // whatever is left of the request that started it
	type status struct {
		State                                  string
		Resumed, Downloaded, Revoked, Uploaded int
		Errors                                 []string
	}
	poll := func() status {
		t.Helper()
		resp, body := env.adminDo(t, http.MethodGet, loc)
		var st status
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
			t.Fatalf("GET %s = %d %s", loc, resp.StatusCode, body)
		}
		return st
	}
	if st := poll(); st.State != "running" {
		t.Fatalf("status while Intune is held = %+v, want running", st)
	}
	close(gate.gate)
	st := poll()
	for deadline := time.Now().Add(30 * time.Second); st.State == "running" && time.Now().Before(deadline); st = poll() {
		time.Sleep(20 * time.Millisecond) // polling, as the console does
	}
	if st.State != "finished" || st.Downloaded != 2 || st.Revoked != 2 || st.Uploaded != 2 || len(st.Errors) != 0 {
		t.Fatalf("run = %+v, want finished: 2 downloaded, revoked and uploaded, no errors", st)
	}
	for _, s := range serials {
		if rec, err := env.base.Get(context.Background(), s); err != nil || rec.Status != store.StatusRevoked || rec.RevokedBy != "intune" {
			t.Errorf("%s: %v %v, want revoked by intune", s, rec.Status, err)
		}
	}
	if n := env.intune.Count(intunefake.RouteDownload); n != 1 {
		t.Errorf("downloads = %d, want one", n)
	}
}
