package scep_test

import (
	"crypto/x509/pkix"
	"net/http"
	"testing"
	"time"

	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/testca"
)

// blameEnv is a SCEP server whose Intune endpoint talks, through the production client (intune.Client behind
// scep.IntuneChallenge), to the Entra/Graph/Intune fake: the errors the SCEP door classifies are the real ones.
type blameEnv struct {
	*env
	fake *intunefake.Server
}

func newBlameEnv(t *testing.T, callTimeout time.Duration) *blameEnv {
	t.Helper()
	return newBlameEnvWith(t, callTimeout, intunefake.Options{})
}

// newBlameEnvWith is newBlameEnv with the fake's options (RequireValidatedTransaction, say).
func newBlameEnvWith(t *testing.T, callTimeout time.Duration, opts intunefake.Options) *blameEnv {
	t.Helper()
	f, err := intunefake.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	cred, err := intune.NewCredential(intune.CredentialConfig{Kind: intune.CredentialClientSecret,
		TenantID: f.TenantID(), ClientID: f.ClientID(), ClientSecret: f.ClientSecret(), AuthorityHost: f.AuthorityHost(),
		DisableInstanceDiscovery: true, HTTPClient: f.Client(), Retry: azpolicy.RetryOptions{MaxRetries: -1}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := intune.New(intune.Config{Credential: cred, TenantID: f.TenantID(), ProviderNameAndVersion: "azscep-test/1.0",
		GraphBase: f.GraphBase(), HTTPClient: f.Client(), CallTimeout: callTimeout, RetryBackoff: time.Millisecond,
		// A discovery that listed no service is not asked again for 5 minutes by default; the retry below comes at once.
		DiscoveryMissRefresh: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	ca := theCA(t)
	ch := &scep.IntuneChallenge{Client: client, CAConfiguration: intune.CAConfiguration(ca.Cert)}
	e := newEnv(t, envOptions{ca: ca, intune: ch, endpoints: []*scep.Endpoint{
		{Name: "intune", Challenge: scep.ChallengeIntune, Profile: testProfile(t)}}})
	return &blameEnv{env: e, fake: f}
}

// request registers a challenge for a fresh device (fixture key n) with the fake and builds its PKCSReq.
func (b *blameEnv) request(t *testing.T, n int, ch intunefake.Challenge) *testca.Request {
	t.Helper()
	ch.Password = newPassword(t)
	if err := b.fake.RegisterChallenge(ch); err != nil {
		t.Fatal(err)
	}
	c := b.client(t, n, "blame-device")
	csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "blame-device"}, ChallengePassword: ch.Password})
	return c.PKCSReq(t, csr)
}

func newPassword(t *testing.T) string {
	t.Helper()
	return "intune-challenge-" + t.Name()
}

// notified counts the fake's success and failure notifications.
func (b *blameEnv) notified() int {
	return b.fake.Count(intunefake.RouteSuccess) + b.fake.Count(intunefake.RouteFailure)
}

// TestIntuneOutageAnswers503: whenever validateRequest does not give Intune's verdict — Intune down, slow,
// throttling, refusing this CA's identity, answering nonsense; the token or Graph discovery failing — the device gets
// HTTP 503 with a Retry-After (Intune's own when it sent one) and no CertRep: nothing is issued, nothing is recorded,
// Intune hears no notification, and the same request succeeds once Intune answers again. A SCEP FAILURE badRequest
// would tell the device its request was wrong and end the enrollment until the profile is re-delivered.
func TestIntuneOutageAnswers503(t *testing.T) {
	t.Parallel()
	jsonError := `{"error":{"code":"InternalServerError","message":"boom"}}`
	for _, tc := range []struct {
		name        string
		route       intunefake.Route
		fault       intunefake.Fault
		callTimeout time.Duration
		retryAfter  string
	}{
		{name: "validate 500", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Status: http.StatusInternalServerError, Body: jsonError}, retryAfter: "30"},
		{name: "validate 503 with retry-after-ms", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Status: http.StatusServiceUnavailable, Body: jsonError,
				Header: http.Header{"Retry-After-Ms": {"1500"}}}, retryAfter: "2"},
		{name: "validate 429 with Retry-After", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Status: http.StatusTooManyRequests, Body: `{"error":{"code":"TooManyRequests","message":"slow down"}}`,
				Header: http.Header{"Retry-After": {"7"}}}, retryAfter: "7"},
		{name: "validate connection dropped", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Drop: true}, retryAfter: "30"},
		{name: "validate times out", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Delay: time.Minute}, callTimeout: 300 * time.Millisecond, retryAfter: "30"},
		{name: "validate 401", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Status: http.StatusUnauthorized, Body: `{"error":{"code":"Unauthorized","message":"no role"}}`}, retryAfter: "30"},
		{name: "validate 403", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Status: http.StatusForbidden, Body: `{"error":{"code":"Forbidden","message":"no role"}}`}, retryAfter: "30"},
		{name: "validate answers no JSON", route: intunefake.RouteValidate,
			fault: intunefake.Fault{Status: http.StatusOK, Body: `<html>gateway</html>`, ContentType: "text/html"}, retryAfter: "30"},
		{name: "token refused", route: intunefake.RouteToken,
			fault: intunefake.Fault{Status: http.StatusUnauthorized,
				Body: `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`}, retryAfter: "30"},
		{name: "discovery 403", route: intunefake.RouteDiscovery,
			fault: intunefake.Fault{Status: http.StatusForbidden,
				Body: `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}`}, retryAfter: "30"},
		{name: "discovery 503", route: intunefake.RouteDiscovery,
			fault: intunefake.Fault{Status: http.StatusServiceUnavailable, Body: jsonError}, retryAfter: "30"},
		{name: "discovery lists no service", route: intunefake.RouteDiscovery,
			fault: intunefake.Fault{Status: http.StatusOK, Body: `{"value":[]}`}, retryAfter: "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := tc.callTimeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			b := newBlameEnv(t, timeout)
			req := b.request(t, 0, intunefake.Challenge{})
			b.fake.InjectFault(tc.route, tc.fault)
			resp, body := testca.Post(t, b.url("intune"), req.Raw)
			wantUnavailable(t, resp, body, tc.retryAfter)
			if n := len(b.records(t)); n != 0 {
				t.Fatalf("%d records while Intune did not decide", n)
			}
			if n := b.notified(); n != 0 {
				t.Fatalf("%d notifications for a request Intune never validated", n)
			}
			if tc.route == intunefake.RouteValidate && b.fake.Count(intunefake.RouteValidate) == 0 {
				t.Fatal("validateRequest was never reached")
			}

			// Intune is back: the device's retry of the very same message enrolls.
			b.fake.ClearFaults()
			wantSuccess(t, b.pki(t, "intune", req))
			if n := b.fake.Count(intunefake.RouteSuccess); n != 1 {
				t.Fatalf("%d successNotifications after the retry, want 1", n)
			}
		})
	}
}

// TestIntuneVerdictStaysFailure: Intune's answer code for a refused request (an expired challenge, another device's
// subject, a profile no longer targeted) is the device's answer: a CertRep FAILURE badRequest, no record, and no
// failureNotification (intune-protocol.md §6.3: not for a rejected validation).
func TestIntuneVerdictStaysFailure(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct {
		name string
		ch   intunefake.Challenge
		code string
	}{
		{"expired", intunefake.Challenge{ExpiresAt: time.Now().Add(-time.Minute)}, "ChallengeExpired"},
		{"subject mismatch", intunefake.Challenge{Subject: "CN=another-device"}, "SubjectNameMismatch"},
		{"untargeted", intunefake.Challenge{Untargeted: true}, "ScepProfileNoLongerTargetedToTheClient"},
		{"bad device ID", intunefake.Challenge{ForceCode: "BadDeviceIdInChallenge"}, "BadDeviceIdInChallenge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBlameEnv(t, 10*time.Second)
			req := b.request(t, i, tc.ch)
			wantFailure(t, b.pki(t, "intune", req), testca.FailBadRequest)
			if got := b.fake.Validations()[req.TransactionID].Code; got != tc.code {
				t.Fatalf("Intune answered %q, want %q", got, tc.code)
			}
			if n := len(b.records(t)); n != 0 {
				t.Fatalf("%d records after Intune said no", n)
			}
			if n := b.notified(); n != 0 {
				t.Fatalf("%d notifications after a rejected validation", n)
			}
		})
	}
}

// wantUnavailable fails t unless the answer is 503 with retryAfter as its Retry-After and no CertRep: Intune gave
// no verdict, and the device is told to come back rather than refused.
func wantUnavailable(t *testing.T, resp *http.Response, body []byte, retryAfter string) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HTTP %d (%s, %d bytes), want 503 and no CertRep", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if got := resp.Header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	if ct := resp.Header.Get("Content-Type"); ct == "application/x-pki-message" {
		t.Error("a 503 carrying a CertRep")
	}
}
