package intune_test

import (
	"crypto/x509/pkix"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
	"github.com/azscep/azscep/internal/testca"
)

func validCSR(t *testing.T, f *intunefake.Server) []byte {
	t.Helper()
	register(t, f, intunefake.Challenge{Password: "pw"})
	return makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "dev"}})
}

// §10 item 12: Entra refuses the credential → ErrAuth, no Intune call, no issuance.
func TestTokenFailureFailsClosed(t *testing.T) {
	t.Parallel()
	f := newFake(t, intunefake.Options{})
	c, _ := newClient(t, f, secretCredential(t, f, "wrong-secret"), nil)
	err := c.ValidateRequest(t.Context(), "tx", validCSR(t, f))
	if !errors.Is(err, intune.ErrAuth) || intune.IsRejection(err) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("error does not carry Entra's reason: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("error leaks the secret: %v", err)
	}
	tokens := f.Requests(intunefake.RouteToken)
	if len(tokens) != 1 || tokens[0].Status != 401 {
		t.Errorf("token requests = %d (status %v), want one 401", len(tokens), tokens)
	}
	for _, r := range []intunefake.Route{intunefake.RouteDiscovery, intunefake.RouteValidate} {
		if n := f.Count(r); n != 0 {
			t.Errorf("%s called %d times without a token", r, n)
		}
	}
}

func TestIntuneTokenFailureAfterDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	// Graph token fine, Intune token refused.
	e.fake.InjectFault(intunefake.RouteToken, intunefake.Fault{Times: 1}) // no-op on the Graph token
	e.fake.InjectFault(intunefake.RouteToken, intunefake.Fault{Status: 400, Body: `{"error":"invalid_scope","error_description":"AADSTS70011: nope"}`, Times: 1})
	err := e.client.ValidateRequest(t.Context(), "tx", csr)
	if !errors.Is(err, intune.ErrAuth) || errors.Is(err, intune.ErrDiscovery) {
		t.Fatalf("err = %v, want ErrAuth (not a discovery error)", err)
	}
	if n := e.fake.Count(intunefake.RouteValidate); n != 0 {
		t.Errorf("validate called without an Intune token")
	}
}

func TestMissingRoles(t *testing.T) {
	t.Parallel()
	t.Run("graph", func(t *testing.T) {
		e := newEnv(t, intunefake.Options{Roles: []string{intunefake.RoleScepChallengeProvider}}, nil)
		err := e.client.ValidateRequest(t.Context(), "tx", validCSR(t, e.fake))
		var he *intune.HTTPError
		if !errors.Is(err, intune.ErrDiscovery) || !errors.Is(err, intune.ErrAuth) || !errors.As(err, &he) || he.Status != 403 {
			t.Fatalf("err = %v, want discovery HTTP 403 / ErrAuth", err)
		}
		if n := e.fake.Count(intunefake.RouteDiscovery); n != 1 {
			t.Errorf("403 from Graph was retried: %d calls", n)
		}
	})
	for _, status := range []int{401, 403} {
		t.Run("intune", func(t *testing.T) {
			e := newEnv(t, intunefake.Options{Roles: []string{intunefake.RoleApplicationReadAll}, MissingRoleStatus: status}, nil)
			err := e.client.ValidateRequest(t.Context(), "tx", validCSR(t, e.fake))
			var he *intune.HTTPError
			if !errors.Is(err, intune.ErrAuth) || !errors.As(err, &he) || he.Status != status {
				t.Fatalf("err = %v, want HTTP %d / ErrAuth", err, status)
			}
		})
	}
}

// A failed Graph discovery (here 404) is retried with a fresh discovery,
// and a later call discovers again instead of caching the failure.
func TestDiscoveryFailureThenRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	e.fake.InjectFault(intunefake.RouteDiscovery, intunefake.Fault{Status: 404, Body: `{"error":{"code":"Request_ResourceNotFound"}}`, Times: 1})
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatalf("ValidateRequest after one discovery 404: %v", err)
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 2 {
		t.Errorf("discovery calls = %d, want 2", n)
	}

	// Graph down for a whole notification (2 attempts) → fails closed …
	e2 := newEnv(t, intunefake.Options{}, nil)
	csr2 := validCSR(t, e2.fake)
	e2.fake.InjectFault(intunefake.RouteDiscovery, intunefake.Fault{Status: 500, Times: 3})
	err := e2.client.ValidateRequest(t.Context(), "tx", csr2)
	if !errors.Is(err, intune.ErrDiscovery) || !errors.Is(err, intune.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrDiscovery+ErrUnavailable", err)
	}
	if n := e2.fake.Count(intunefake.RouteValidate); n != 0 {
		t.Errorf("validate POSTed without a discovered location")
	}
	// … and the next call discovers again.
	if err := e2.client.ValidateRequest(t.Context(), "tx", csr2); err != nil {
		t.Fatalf("after Graph recovered: %v", err)
	}
}

// The service moved: the cached location answers 404; the client drops its
// cache, rediscovers and succeeds within the same call.
func TestServiceMovedAnswers404ThenRediscovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	base := e.fake.URL()
	e.fake.SetServiceBases(base+"/scale-unit-1", base+"/scale-unit-1")
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatal(err)
	}
	e.fake.SetServiceBases(base+"/scale-unit-2", base+"/scale-unit-2")
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatalf("after the move: %v", err)
	}
	posts := e.fake.Requests(intunefake.RouteValidate)
	if len(posts) != 3 || posts[1].Status != 404 || !strings.Contains(posts[2].Path, "/scale-unit-2/") {
		t.Errorf("POSTs: %d; want 1 ok, 1 stale 404, 1 ok at the new location", len(posts))
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 2 {
		t.Errorf("discovery calls = %d, want 2", n)
	}

	// A 404 that persists after rediscovery is not retried forever.
	e.fake.ResetJournal()
	e.fake.InjectFault(intunefake.RouteFailure, intunefake.Fault{Status: 404})
	err := e.client.NotifyFailure(t.Context(), "tx", csr, intune.HResultIssuanceFailed, "x")
	var he *intune.HTTPError
	if !errors.As(err, &he) || he.Status != 404 {
		t.Fatalf("NotifyFailure against a persistent 404 = %v, want HTTPError 404", err)
	}
	if n := e.fake.Count(intunefake.RouteFailure); n != 2 {
		t.Errorf("POSTs = %d, want 2 (one rediscovery retry)", n)
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 1 {
		t.Errorf("discovery calls = %d, want 1", n)
	}
}

// §10 "connection error → rediscovery": the old host refuses connections.
func TestConnectionErrorTriggersRediscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	oldBase, closeOld := e.fake.AddListener()
	e.fake.SetServiceBases(oldBase, oldBase)
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatal(err)
	}
	if err := e.client.NotifyFailure(t.Context(), "tx", csr, 1, "warm"); err != nil {
		t.Fatal(err)
	}
	// Move the services back to the main host and kill the old one.
	e.fake.SetServiceBases(e.fake.URL(), e.fake.URL())
	closeOld()
	// Even a non-idempotent call (one retry at most) recovers.
	cert := issueCert(t, csr, time.Now().Add(time.Hour))
	if err := e.client.NotifySuccess(t.Context(), intune.SuccessNotification{TransactionID: "tx", CSR: csr, Certificate: cert, SerialNumber: "01"}); err != nil {
		t.Fatalf("NotifySuccess after the host moved: %v", err)
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 2 {
		t.Errorf("discovery calls = %d, want 2", n)
	}
	if got := e.fake.Requests(intunefake.RouteSuccess); len(got) != 1 || "https://"+got[0].Host != e.fake.URL() {
		t.Errorf("success POSTs = %+v, want 1 on the new host", got)
	}
}

func TestDiscoverySelection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	base := e.fake.URL()
	e.fake.SetEndpoints([]intunefake.Endpoint{
		{ProviderName: "SomethingElse", URI: base + "/decoy"},
		{ProviderName: "scePrequestvalidationfeservice", URI: base + "/first" + intunefake.ScepServicePath + "/"},
		{ProviderName: "ScepRequestValidationFEService", URI: base + "/second" + intunefake.ScepServicePath},
		{ProviderName: "PkiConnectorFEService", URI: "http://insecure.example" + intunefake.PkiServicePath},
		{ProviderName: "PkiConnectorFEService"},
	})
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatalf("ValidateRequest: %v", err)
	}
	p := e.fake.Requests(intunefake.RouteValidate)[0].Path
	if p != "/first"+intunefake.ScepServicePath+"/ScepActions/validateRequest" {
		t.Errorf("POST path = %q: want the first case-insensitive match with the trailing '/' trimmed", p)
	}
	// The PKI entry is unusable (http, and one without uri): not found,
	// and no rediscovery storm while the list is fresh.
	for i := 0; i < 3; i++ {
		_, err := e.client.DownloadRevocationRequests(t.Context(), 10)
		if !errors.Is(err, intune.ErrServiceNotFound) {
			t.Fatalf("download err = %v, want ErrServiceNotFound", err)
		}
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 1 {
		t.Errorf("discovery calls = %d, want 1", n)
	}
	if n := e.fake.Count(intunefake.RouteDownload); n != 0 {
		t.Errorf("download POSTed to an unusable URI")
	}
}

func TestDiscoveryMissRefreshAndTTL(t *testing.T) {
	t.Parallel()
	clock := testca.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, intunefake.Options{}, func(c *intune.Config) {
		c.Now = clock.Now
		c.DiscoveryMissRefresh = time.Minute
		c.DiscoveryTTL = time.Hour
	})
	csr := validCSR(t, e.fake)
	base := e.fake.URL()
	e.fake.SetEndpoints(intunefake.DefaultEndpoints(base, base)[:2]) // no PKI service
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.DownloadRevocationRequests(t.Context(), 1); !errors.Is(err, intune.ErrServiceNotFound) {
		t.Fatalf("err = %v, want ErrServiceNotFound", err)
	}
	e.fake.SetEndpoints(nil) // PKI service appears
	clock.Advance(2 * time.Minute)
	if _, err := e.client.DownloadRevocationRequests(t.Context(), 1); err != nil {
		t.Fatalf("after the miss-refresh interval: %v", err)
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 2 {
		t.Errorf("discovery calls = %d, want 2", n)
	}
	clock.Advance(2 * time.Hour) // TTL
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatal(err)
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 3 {
		t.Errorf("discovery calls after TTL = %d, want 3", n)
	}
}

func TestMalformedDiscovery(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{}`, `{"value":null}`, `not json`, `{"value":{}}`} {
		e := newEnv(t, intunefake.Options{}, nil)
		e.fake.InjectFault(intunefake.RouteDiscovery, intunefake.Fault{Status: 200, Body: body})
		err := e.client.ValidateRequest(t.Context(), "tx", validCSR(t, e.fake))
		if !errors.Is(err, intune.ErrDiscovery) || !errors.Is(err, intune.ErrMalformedResponse) {
			t.Errorf("discovery body %s: err = %v, want ErrDiscovery+ErrMalformedResponse", body, err)
		}
	}
}

// Concurrent cold calls share one discovery and one token per scope.
func TestConcurrentColdCallsSingleFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	e.fake.InjectFault(intunefake.RouteDiscovery, intunefake.Fault{Delay: 100 * time.Millisecond, Times: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.client.ValidateRequest(t.Context(), "tx", csr)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent ValidateRequest: %v", err)
		}
	}
	if n := e.fake.Count(intunefake.RouteDiscovery); n != 1 {
		t.Errorf("discovery calls = %d, want 1", n)
	}
	if n := e.fake.Count(intunefake.RouteToken); n != 2 {
		t.Errorf("token calls = %d, want 2", n)
	}
	if n := e.fake.Count(intunefake.RouteValidate); n != 20 {
		t.Errorf("validate calls = %d, want 20", n)
	}
}

func TestCanceledContextFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := validCSR(t, e.fake)
	ctx, cancel := contextWithCancel(t)
	cancel()
	if err := e.client.ValidateRequest(ctx, "tx", csr); err == nil {
		t.Fatal("ValidateRequest with a canceled context succeeded")
	}
}
