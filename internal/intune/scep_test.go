package intune_test

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func register(t *testing.T, f *intunefake.Server, c intunefake.Challenge) {
	t.Helper()
	if err := f.RegisterChallenge(c); err != nil {
		t.Fatal(err)
	}
}

// First call: one Graph token, one discovery, one Intune token, one POST;
// the next calls reuse all of it. Headers and body are exactly §5.1/§6.1.
func TestValidateRequestSuccessAndWarmCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "pw-1"})
	csr := makeCSR(t, csrSpec{password: "pw-1", subject: pkix.Name{CommonName: "dev1"}})
	ctx := t.Context()

	if err := e.client.ValidateRequest(ctx, "tx-1", csr); err != nil {
		t.Fatalf("ValidateRequest: %v", err)
	}
	want := map[intunefake.Route]int{intunefake.RouteToken: 2, intunefake.RouteDiscovery: 1, intunefake.RouteValidate: 1}
	for r, n := range want {
		if got := e.fake.Count(r); got != n {
			t.Errorf("after first call: %s count = %d, want %d", r, got, n)
		}
	}
	if got := e.fake.Count(intunefake.RouteInstanceDiscovery); got != 0 {
		t.Errorf("instance discovery was called %d times; it must be disabled", got)
	}
	scopes := map[string]bool{}
	for _, tr := range e.fake.Requests(intunefake.RouteToken) {
		// MSAL adds the OIDC scopes; the resource scope is what matters.
		for _, sc := range strings.Fields(tr.Form.Get("scope")) {
			scopes[sc] = true
		}
		if tr.Form.Get("client_secret") != "REDACTED" {
			t.Errorf("token request without client_secret")
		}
	}
	// The Graph scope follows the (fake) Graph base; the Intune scope is the
	// double-slash form of the default Intune resource.
	for _, s := range []string{e.fake.GraphBase() + ".default", "https://api.manage.microsoft.com//.default"} {
		if !scopes[s] {
			t.Errorf("no token requested for scope %q (got %v)", s, scopes)
		}
	}

	for i := 2; i <= 4; i++ {
		if err := e.client.ValidateRequest(ctx, "tx-warm", csr); err != nil {
			t.Fatalf("warm ValidateRequest %d: %v", i, err)
		}
	}
	if got := e.fake.Count(intunefake.RouteToken); got != 2 {
		t.Errorf("warm calls requested tokens: token count = %d, want 2", got)
	}
	if got := e.fake.Count(intunefake.RouteDiscovery); got != 1 {
		t.Errorf("warm calls rediscovered: discovery count = %d, want 1", got)
	}

	posts := e.fake.Requests(intunefake.RouteValidate)
	if len(posts) != 4 {
		t.Fatalf("validate POSTs = %d, want 4", len(posts))
	}
	ids := map[string]bool{}
	for _, p := range posts {
		h := p.Header
		if !strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
			t.Errorf("Authorization = %q", h.Get("Authorization"))
		}
		checks := map[string]string{
			"Content-Type": "application/json",
			"Accept":       "application/json",
			"api-version":  "2018-02-20",
			"User-Agent":   provider,
		}
		for k, v := range checks {
			if got := h.Get(k); got != v {
				t.Errorf("header %s = %q, want %q", k, got, v)
			}
		}
		if got := h.Values("UserAgent"); len(got) != 1 || got[0] != provider {
			t.Errorf("UserAgent header = %q, want %q", got, provider)
		}
		id := h.Get("client-request-id")
		if !uuidRE.MatchString(id) {
			t.Errorf("client-request-id %q is not a lower-case UUID", id)
		}
		if ids[id] {
			t.Errorf("client-request-id %q reused", id)
		}
		ids[id] = true
		if p.RawQuery != "" {
			t.Errorf("query string %q sent", p.RawQuery)
		}
		if p.Method != "POST" || !strings.HasSuffix(p.Path, intunefake.ScepServicePath+"/ScepActions/validateRequest") {
			t.Errorf("request %s %s", p.Method, p.Path)
		}
	}
	wantBody := mustJSON(t, `{"request":{"transactionId":"tx-1","certificateRequest":"`+
		base64.StdEncoding.EncodeToString(csr)+`","callerInfo":"`+provider+`"}}`)
	if got := bodyOf(t, posts[0]); !reflect.DeepEqual(any(got), wantBody) {
		t.Errorf("body = %v\nwant  %v", got, wantBody)
	}
	noRejections(t, e.fake)
}

// Every validation failure Intune can report comes back as a rejection
// carrying the code, and is not retried.
func TestValidateRequestRejectionCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	f := e.fake
	now := f.Now()
	register(t, f, intunefake.Challenge{Password: "expired", ExpiresAt: now.Add(time.Minute)})
	register(t, f, intunefake.Challenge{Password: "subject", Subject: "CN=dev1,O=Contoso"})
	register(t, f, intunefake.Challenge{Password: "san", DNSNames: []string{"dev1.contoso.com"}, UPNs: []string{"alice@contoso.com"}})
	register(t, f, intunefake.Challenge{Password: "ip", IPs: []string{"10.0.0.1"}})
	register(t, f, intunefake.Challenge{Password: "ku", KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment})
	register(t, f, intunefake.Challenge{Password: "eku", ExtKeyUsages: []string{"clientAuth"}})
	register(t, f, intunefake.Challenge{Password: "size", KeySize: 2048})
	register(t, f, intunefake.Challenge{Password: "untargeted", Untargeted: true})
	register(t, f, intunefake.Challenge{Password: "forced", ForceCode: "BadDeviceIdInChallenge"})
	f.Advance(2 * time.Minute) // "expired" is now past its expiry

	good := makeCSR(t, csrSpec{password: "subject", subject: pkix.Name{CommonName: "dev1"}})
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-3] ^= 0xff

	tests := []struct {
		name string
		csr  []byte
		want intune.Code
	}{
		{"garbage", []byte("not a csr"), intune.CodeCertificateRequestDecodingFailed},
		{"bad signature", badSig, intune.CodeSignatureValidationFailed},
		{"no password", makeCSR(t, csrSpec{subject: pkix.Name{CommonName: "dev1"}}), intune.CodeChallengePasswordMissing},
		{"unknown password", makeCSR(t, csrSpec{password: "nope", subject: pkix.Name{CommonName: "x"}}), intune.CodeChallengeDecryptionError},
		{"expired", makeCSR(t, csrSpec{password: "expired", subject: pkix.Name{CommonName: "x"}}), intune.CodeChallengeExpired},
		{"untargeted", makeCSR(t, csrSpec{password: "untargeted", subject: pkix.Name{CommonName: "x"}}), intune.CodeScepProfileNoLongerTargetedToTheClient},
		{"forced", makeCSR(t, csrSpec{password: "forced", subject: pkix.Name{CommonName: "x"}}), intune.CodeBadDeviceIDInChallenge},
		{"subject mismatch", makeCSR(t, csrSpec{password: "subject", subject: pkix.Name{CommonName: "dev2", Organization: []string{"Contoso"}}}), intune.CodeSubjectNameMismatch},
		{"subject missing", makeCSR(t, csrSpec{password: "subject"}), intune.CodeSubjectNameMissing},
		{"san mismatch", makeCSR(t, csrSpec{password: "san", dns: []string{"dev1.contoso.com"}, upns: []string{"mallory@contoso.com"}}), intune.CodeSubjectAltNameMismatch},
		{"san with an IP the profile does not list", makeCSR(t, csrSpec{password: "san", dns: []string{"dev1.contoso.com"}, upns: []string{"alice@contoso.com"}, ips: []net.IP{net.ParseIP("10.0.0.1")}}), intune.CodeSubjectAltNameMismatch},
		{"ip san mismatch", makeCSR(t, csrSpec{password: "ip", ips: []net.IP{net.ParseIP("10.0.0.2")}}), intune.CodeSubjectAltNameMismatch},
		{"san missing", makeCSR(t, csrSpec{password: "san", subject: pkix.Name{CommonName: "x"}}), intune.CodeSubjectAltNameMissing},
		{"key usage", makeCSR(t, csrSpec{password: "ku", ku: x509.KeyUsageDigitalSignature}), intune.CodeKeyUsageMismatch},
		{"eku mismatch", makeCSR(t, csrSpec{password: "eku", ekus: []asn1.ObjectIdentifier{oidServerAuth}}), intune.CodeEnhancedKeyUsageMismatch},
		{"eku missing", makeCSR(t, csrSpec{password: "eku"}), intune.CodeEnhancedKeyUsageMissing},
		{"key length", makeCSR(t, csrSpec{password: "size", rsaBits: 1024}), intune.CodeKeyLengthMismatch},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.Count(intunefake.RouteValidate)
			tx := "tx-code-" + string(rune('a'+i))
			err := e.client.ValidateRequest(t.Context(), tx, tc.csr)
			var ve *intune.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			if ve.Code != tc.want {
				t.Errorf("code = %q, want %q (%s)", ve.Code, tc.want, ve.Description)
			}
			if ve.TransactionID != tx || !uuidRE.MatchString(ve.ActivityID) || ve.Operation != "validateRequest" {
				t.Errorf("error context = %+v", ve)
			}
			if !intune.IsRejection(err) {
				t.Errorf("IsRejection = false")
			}
			if errors.Is(err, intune.ErrUnavailable) {
				t.Errorf("a rejection must not look like unavailability")
			}
			if got := f.Count(intunefake.RouteValidate) - before; got != 1 {
				t.Errorf("rejection was retried: %d POSTs", got)
			}
		})
	}
	noRejections(t, f)
}

// The matching success cases of the checks above.
func TestValidateRequestMatchingProfile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{
		Password:     "full",
		ExpiresAt:    e.fake.Now().Add(time.Hour),
		Subject:      "CN=dev1,O=Contoso",
		DNSNames:     []string{"dev1.contoso.com"},
		Emails:       []string{"alice@contoso.com"},
		UPNs:         []string{"alice@contoso.com"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []string{"clientAuth", "1.3.6.1.5.5.7.3.1"},
		KeySize:      2048,
	})
	csr := makeCSR(t, csrSpec{
		password: "full", subject: pkix.Name{CommonName: "dev1", Organization: []string{"Contoso"}},
		dns: []string{"DEV1.contoso.com"}, emails: []string{"alice@contoso.com"}, upns: []string{"alice@contoso.com"},
		ku: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ekus: []asn1.ObjectIdentifier{oidServerAuth, oidClientAuth},
		rsaBits: 2048,
	})
	if err := e.client.ValidateRequest(t.Context(), "tx-full", csr); err != nil {
		t.Fatalf("ValidateRequest: %v", err)
	}
	if v := e.fake.Validations()["tx-full"]; v.Code != "Success" {
		t.Errorf("fake recorded %q", v.Code)
	}
}

// Faults of §11.3: every one fails closed; only transport errors, 5xx and
// 429 are retried, and never beyond MaxAttempts.
func TestValidateRequestFaultsFailClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     intunefake.Fault
		wantPosts int
		check     func(t *testing.T, err error)
	}{
		{"500", intunefake.Fault{Status: 500, Body: `{"error":{"code":"InternalError"}}`}, 3, func(t *testing.T, err error) {
			var he *intune.HTTPError
			if !errors.As(err, &he) || he.Status != 500 || !errors.Is(err, intune.ErrUnavailable) {
				t.Errorf("err = %v, want HTTPError 500 / ErrUnavailable", err)
			}
		}},
		{"503", intunefake.Fault{Status: 503}, 3, isUnavailable},
		{"429", intunefake.Fault{Status: 429, Header: map[string][]string{"Retry-After": {"0"}}}, 3, isUnavailable},
		{"401", intunefake.Fault{Status: 401}, 1, func(t *testing.T, err error) {
			if !errors.Is(err, intune.ErrAuth) || errors.Is(err, intune.ErrUnavailable) {
				t.Errorf("err = %v, want ErrAuth only", err)
			}
		}},
		{"403", intunefake.Fault{Status: 403}, 1, func(t *testing.T, err error) {
			if !errors.Is(err, intune.ErrAuth) {
				t.Errorf("err = %v, want ErrAuth", err)
			}
		}},
		{"400", intunefake.Fault{Status: 400}, 1, isHTTP(400)},
		{"200 empty", intunefake.Fault{Status: 200, Body: " "}, 1, isMalformed},
		{"200 not json", intunefake.Fault{Status: 200, Body: "<html>ok</html>", ContentType: "text/html"}, 1, isMalformed},
		{"200 json array", intunefake.Fault{Status: 200, Body: `[]`}, 1, isMalformed},
		{"200 no code", intunefake.Fault{Status: 200, Body: `{"errorDescription":""}`}, 1, isMalformed},
		{"200 empty code", intunefake.Fault{Status: 200, Body: `{"code":"","errorDescription":""}`}, 1, isMalformed},
		{"200 code not string", intunefake.Fault{Status: 200, Body: `{"code":0,"errorDescription":""}`}, 1, isMalformed},
		{"200 Code capitalised", intunefake.Fault{Status: 200, Body: `{"Code":"Success","errorDescription":""}`}, 1, isMalformed},
		{"200 no errorDescription", intunefake.Fault{Status: 200, Body: `{"code":"Success"}`}, 1, isMalformed},
		{"200 null errorDescription", intunefake.Fault{Status: 200, Body: `{"code":"Success","errorDescription":null}`}, 1, isMalformed},
		{"200 unknown code", intunefake.Fault{Status: 200, Body: `{"code":"Bogus","errorDescription":"?"}`}, 1, isRejectionWith("Bogus")},
		{"200 lower-case success", intunefake.Fault{Status: 200, Body: `{"code":"success","errorDescription":""}`}, 1, isRejectionWith("success")},
		{"204", intunefake.Fault{Status: 204}, 1, isMalformed},
		{"connection reset", intunefake.Fault{Drop: true}, 3, isUnavailable},
		{"timeout", intunefake.Fault{Delay: 20 * time.Second}, 3, func(t *testing.T, err error) {
			isUnavailable(t, err)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want DeadlineExceeded in the chain", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, intunefake.Options{}, nil)
			register(t, e.fake, intunefake.Challenge{Password: "pw"})
			csr := makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "d"}})
			// Warm the shared token cache, so a short per-attempt timeout
			// is spent on the POST, not on token acquisition under -race.
			if err := e.client.ValidateRequest(t.Context(), "warm", csr); err != nil {
				t.Fatal(err)
			}
			e.client, _ = clientWithCred(t, e.fake, e.cred, func(c *intune.Config) { c.CallTimeout = 500 * time.Millisecond })
			e.fake.ResetJournal()
			e.fake.InjectFault(intunefake.RouteValidate, tc.fault)
			err := e.client.ValidateRequest(t.Context(), "tx", csr)
			if err == nil {
				t.Fatalf("fault %s: ValidateRequest succeeded; must fail closed", tc.name)
			}
			tc.check(t, err)
			if got := e.fake.Count(intunefake.RouteValidate); got != tc.wantPosts {
				t.Errorf("POSTs = %d, want %d", got, tc.wantPosts)
			}
			// The fault is gone: the same client recovers (nothing was cached wrongly).
			e.fake.ClearFaults()
			if err := e.client.ValidateRequest(t.Context(), "tx2", csr); err != nil {
				t.Errorf("after clearing the fault: %v", err)
			}
		})
	}
}

func isUnavailable(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, intune.ErrUnavailable) || intune.IsRejection(err) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}

func isMalformed(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, intune.ErrMalformedResponse) || intune.IsRejection(err) {
		t.Errorf("err = %v, want ErrMalformedResponse", err)
	}
}

func isHTTP(status int) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var he *intune.HTTPError
		if !errors.As(err, &he) || he.Status != status || !uuidRE.MatchString(he.ActivityID) {
			t.Errorf("err = %v, want HTTPError %d", err, status)
		}
	}
}

func isRejectionWith(code string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ve *intune.ValidationError
		if !errors.As(err, &ve) || string(ve.Code) != code {
			t.Errorf("err = %v, want rejection %q", err, code)
		}
	}
}

// A transient 5xx is retried and the retry's Success is honoured.
func TestValidateRequestRetriesTransient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "pw"})
	csr := makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "d"}})
	e.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: 503, Times: 2})
	if err := e.client.ValidateRequest(t.Context(), "tx", csr); err != nil {
		t.Fatalf("ValidateRequest: %v", err)
	}
	posts := e.fake.Requests(intunefake.RouteValidate)
	if len(posts) != 3 {
		t.Fatalf("POSTs = %d, want 3", len(posts))
	}
	if posts[0].Header.Get("client-request-id") == posts[1].Header.Get("client-request-id") {
		t.Errorf("retry reused the client-request-id")
	}
}

func TestValidateRequestArguments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	for _, tc := range []struct {
		tx  string
		csr []byte
	}{{"", []byte{1}}, {"  ", []byte{1}}, {"tx", nil}, {"\xff", []byte{1}}} {
		if err := e.client.ValidateRequest(t.Context(), tc.tx, tc.csr); !errors.Is(err, intune.ErrInvalidArgument) {
			t.Errorf("ValidateRequest(%q, %d bytes) = %v, want ErrInvalidArgument", tc.tx, len(tc.csr), err)
		}
	}
	if n := len(e.fake.Journal()); n != 0 {
		t.Errorf("invalid arguments caused %d requests", n)
	}
}

func TestNotifySuccessBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{RequireValidatedTransaction: true}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "pw"})
	csr := makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "dev1"}})
	ctx := t.Context()
	if err := e.client.ValidateRequest(ctx, "tx-s", csr); err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2031, 1, 31, 23, 59, 59, 987654321, time.FixedZone("CET", 3600))
	cert := issueCert(t, csr, notAfter)
	n := intune.SuccessNotification{
		TransactionID:        "tx-s",
		CSR:                  csr,
		Certificate:          cert,
		SerialNumber:         "0ABCDEF0123456789",
		CAConfiguration:      "CN=Test Issuing CA,O=Contoso\\, Ltd,C=SE",
		CertificateAuthority: "azscep",
	}
	if err := e.client.NotifySuccess(ctx, n); err != nil {
		t.Fatalf("NotifySuccess: %v", err)
	}
	sum := sha1.Sum(cert.Raw)
	thumb := strings.ToUpper(hex.EncodeToString(sum[:]))
	posts := e.fake.Requests(intunefake.RouteSuccess)
	if len(posts) != 1 {
		t.Fatalf("success POSTs = %d", len(posts))
	}
	want := map[string]any{"notification": map[string]any{
		"transactionId":                "tx-s",
		"certificateRequest":           base64.StdEncoding.EncodeToString(csr),
		"certificateThumbprint":        thumb,
		"certificateSerialNumber":      "0ABCDEF0123456789",
		"certificateExpirationDateUtc": "2031-01-31T22:59:59.000Z", // X.509 times have whole seconds
		"issuingCertificateAuthority":  "CN=Test Issuing CA,O=Contoso\\, Ltd,C=SE",
		"callerInfo":                   provider,
		"caConfiguration":              "CN=Test Issuing CA,O=Contoso\\, Ltd,C=SE",
		"certificateAuthority":         "azscep",
	}}
	if got := bodyOf(t, posts[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("body = %v\nwant  %v", got, want)
	}
	if got := posts[0].Header.Get("api-version"); got != "2018-02-20" {
		t.Errorf("api-version = %q", got)
	}
	if len(thumb) != 40 || intune.Thumbprint(cert) != thumb {
		t.Errorf("Thumbprint = %q, want %q", intune.Thumbprint(cert), thumb)
	}
	issued := e.fake.IssuedCertificates()
	if len(issued) != 1 || issued[0].SerialNumber != "0ABCDEF0123456789" {
		t.Errorf("fake issued records = %+v", issued)
	}
	noRejections(t, e.fake)

	// Empty optional members are sent as JSON null, not "".
	n.CAConfiguration, n.CertificateAuthority = "", ""
	if err := e.client.NotifySuccess(ctx, n); err != nil {
		t.Fatalf("NotifySuccess without CA names: %v", err)
	}
	inner := bodyOf(t, e.fake.Requests(intunefake.RouteSuccess)[1])["notification"].(map[string]any)
	for _, k := range []string{"caConfiguration", "certificateAuthority"} {
		if v, ok := inner[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
}

// §10 item 11: a failed success notification means no delivery. The
// notification is attempted at most twice.
func TestNotifySuccessFailuresFailClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "pw"})
	csr := makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "dev1"}})
	cert := issueCert(t, csr, time.Now().Add(time.Hour))
	n := intune.SuccessNotification{TransactionID: "tx", CSR: csr, Certificate: cert, SerialNumber: "01"}

	e.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: 500})
	err := e.client.NotifySuccess(t.Context(), n)
	var he *intune.HTTPError
	if !errors.As(err, &he) || he.Status != 500 {
		t.Fatalf("NotifySuccess with 500 = %v, want HTTPError 500", err)
	}
	if got := e.fake.Count(intunefake.RouteSuccess); got != 2 {
		t.Errorf("success POSTs = %d, want 2 (one retry at most)", got)
	}
	e.fake.ClearFaults()

	e.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: 200, Body: `{"code":"ChallengeDecryptionError","errorDescription":"no"}`, Times: 1})
	if err := e.client.NotifySuccess(t.Context(), n); !intune.IsRejection(err) {
		t.Errorf("rejected notification = %v, want rejection", err)
	}
	e.fake.InjectFault(intunefake.RouteSuccess, intunefake.Fault{Status: 503, Times: 1})
	if err := e.client.NotifySuccess(t.Context(), n); err != nil {
		t.Errorf("one 503 then Success = %v, want nil", err)
	}
	for _, bad := range []intune.SuccessNotification{
		{CSR: csr, Certificate: cert, SerialNumber: "01"},
		{TransactionID: "tx", Certificate: cert, SerialNumber: "01"},
		{TransactionID: "tx", CSR: csr, SerialNumber: "01"},
		{TransactionID: "tx", CSR: csr, Certificate: cert},
	} {
		if err := e.client.NotifySuccess(t.Context(), bad); !errors.Is(err, intune.ErrInvalidArgument) {
			t.Errorf("NotifySuccess(%+v) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestNotifyFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	csr := makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "dev1"}})
	ctx := t.Context()
	long := strings.Repeat("x", 300)
	emoji := strings.Repeat("😀", 200) // 2 UTF-16 units each

	cases := []struct {
		hresult  uint32
		desc     string
		wantH    string
		wantDesc string
	}{
		{intune.HResultIssuanceFailed, "Key Vault unavailable", "536870913", "Key Vault unavailable"},
		{0x8000FFFF, "unexpected", "2147549183", "unexpected"},
		{0x20000100 + 2, long, "536871170", long[:255]},
		{1, emoji, "1", strings.Repeat("😀", 127)},
	}
	for i, tc := range cases {
		if err := e.client.NotifyFailure(ctx, "tx-f", csr, tc.hresult, tc.desc); err != nil {
			t.Fatalf("NotifyFailure %d: %v", i, err)
		}
		got := bodyOf(t, e.fake.Requests(intunefake.RouteFailure)[i])
		want := mustJSON(t, `{"notification":{"transactionId":"tx-f","certificateRequest":"`+
			base64.StdEncoding.EncodeToString(csr)+`","hResult":`+tc.wantH+`,"errorDescription":"`+tc.wantDesc+`","callerInfo":"`+provider+`"}}`)
		if !reflect.DeepEqual(any(got), want) {
			t.Errorf("case %d body = %v\nwant %v", i, got, want)
		}
	}
	reports := e.fake.FailureReports()
	if len(reports) != 4 || reports[1].HResult != 2147549183 || reports[0].HResult != 0x20000001 {
		t.Errorf("fake failure reports = %+v", reports)
	}
	noRejections(t, e.fake)

	if err := e.client.NotifyFailure(ctx, "tx-f", csr, 1, "   "); !errors.Is(err, intune.ErrInvalidArgument) {
		t.Errorf("blank description = %v, want ErrInvalidArgument", err)
	}
	if n := e.fake.Count(intunefake.RouteFailure); n != 4 {
		t.Errorf("blank description was sent")
	}
}

func TestTruncateDescription(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in        string
		wantRunes int
	}{
		{strings.Repeat("a", 255), 255},
		{strings.Repeat("a", 256), 255},
		{strings.Repeat("é", 300), 255},
		{strings.Repeat("a", 254) + "😀", 254}, // the surrogate pair would make 256 units
		{"bad \xff utf8", 10},
	} {
		got := intune.TruncateDescription(tc.in)
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) != tc.wantRunes {
			t.Errorf("TruncateDescription(%.20q...) = %d runes (valid %v), want %d", tc.in, utf8.RuneCountInString(got), utf8.ValidString(got), tc.wantRunes)
		}
	}
}

func TestFormatExpiry(t *testing.T) {
	t.Parallel()
	for in, want := range map[time.Time]string{
		time.Date(2026, 1, 31, 23, 59, 59, 0, time.UTC):                               "2026-01-31T23:59:59.000Z",
		time.Date(2026, 2, 1, 0, 59, 59, 987654321, time.FixedZone("CET", 3600)):      "2026-01-31T23:59:59.987Z",
		time.Date(2026, 1, 31, 18, 59, 59, 5_000_000, time.FixedZone("EST", -5*3600)): "2026-01-31T23:59:59.005Z",
	} {
		if got := intune.FormatExpiry(in); got != want {
			t.Errorf("FormatExpiry(%v) = %q, want %q", in, got, want)
		}
	}
}

// An error answer never brings its raw body into errors or logs: one that echoed the request would carry the CSR,
// and the challenge password inside it. A Graph/OData error keeps its code and message; anything else, its size.
func TestErrorAnswersAreSummarised(t *testing.T) {
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "pw-echoed"})
	csr := makeCSR(t, csrSpec{password: "pw-echoed", subject: pkix.Name{CommonName: "d"}})
	echo := base64.StdEncoding.EncodeToString(csr)
	for _, tc := range []struct {
		body, want string
	}{
		{`{"error":{"code":"BadRequest","message":"cannot read ` + echo + `"}}`, "BadRequest: cannot read …"},
		{`{"odata.error":{"code":"Busy","message":{"lang":"en","value":"try later"}}}`, "Busy: try later"},
		{`{"error":{"code":"Throttled","message":"activity 0f8fad5b-d9cb-469f-a165-70867728950e"}}`,
			"Throttled: activity 0f8fad5b-d9cb-469f-a165-70867728950e"}, // GUIDs stay
		{`{"error":"busy"}`, "busy"},
		{"request was: " + echo + " challenge pw-echoed", "-byte answer)"},
		// A rejection in a 200 answer: its errorDescription is cleaned the same way.
		{`{"code":"ChallengeDecryptionError","errorDescription":"cannot decrypt the challenge of ` + echo + `"}`,
			"ChallengeDecryptionError: cannot decrypt the challenge of …"},
	} {
		e.fake.ClearFaults()
		status := 400
		if strings.HasPrefix(tc.body, `{"code"`) {
			status = 200
		}
		e.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: status, Body: tc.body})
		err := e.client.ValidateRequest(t.Context(), "tx", csr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("body %.40q: error %v, want it to say %q", tc.body, err, tc.want)
		}
		for _, leak := range []string{echo[:40], "pw-echoed"} {
			if err != nil && strings.Contains(err.Error(), leak) || strings.Contains(e.logs.String(), leak) {
				t.Errorf("body %.40q: %q reached the error or the log", tc.body, leak)
			}
		}
	}
}

// TestRefusedUntilAnswered: a 401/403 from Intune, or from Graph at discovery, starts a refusal of that service that
// Refused reports, naming the call and keeping when it began across later refusals; the first 2xx answer from the
// same service ends it. Other failures (5xx) say nothing either way.
func TestRefusedUntilAnswered(t *testing.T) {
	e := newEnv(t, intunefake.Options{}, nil)
	register(t, e.fake, intunefake.Challenge{Password: "pw"})
	csr := makeCSR(t, csrSpec{password: "pw", subject: pkix.Name{CommonName: "d"}})
	if r := e.client.Refused(); len(r) != 0 {
		t.Fatalf("refused before any call: %+v", r)
	}
	e.fake.InjectFault(intunefake.RouteDiscovery, intunefake.Fault{Status: 403, Times: 1})
	if err := e.client.ValidateRequest(t.Context(), "tx-1", csr); err == nil {
		t.Fatal("ValidateRequest succeeded through a refused discovery")
	}
	if r := e.client.Refused(); len(r) != 1 || r[0].Service != "graph" || r[0].Operation != "discovery" || r[0].Status != 403 {
		t.Fatalf("after a refused discovery: Refused = %+v", r)
	}
	e.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: 401, Times: 2})
	if err := e.client.ValidateRequest(t.Context(), "tx-2", csr); err == nil {
		t.Fatal("ValidateRequest succeeded through a 401")
	}
	first := e.client.Refused() // discovery answered this time: only Intune refuses
	if len(first) != 1 || first[0].Service != "intune" || first[0].Operation != "validateRequest" || first[0].Status != 401 {
		t.Fatalf("after a refused validateRequest: Refused = %+v", first)
	}
	_ = e.client.ValidateRequest(t.Context(), "tx-3", csr)
	e.fake.InjectFault(intunefake.RouteValidate, intunefake.Fault{Status: 503, Times: 3})
	_ = e.client.ValidateRequest(t.Context(), "tx-4", csr)
	if r := e.client.Refused(); len(r) != 1 || !r[0].Since.Equal(first[0].Since) {
		t.Fatalf("after another 401 and a 503: Refused = %+v; want the refusal since %v", r, first[0].Since)
	}
	if err := e.client.ValidateRequest(t.Context(), "tx-5", csr); err != nil {
		t.Fatal(err)
	}
	if r := e.client.Refused(); len(r) != 0 {
		t.Fatalf("after an answered call: Refused = %+v", r)
	}
}
