package intune_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/intune"
	"github.com/azscep/azscep/internal/intune/intunefake"
)

func enqueue(t *testing.T, f *intunefake.Server, serial, caConfig string) string {
	t.Helper()
	rc, err := f.EnqueueRevocation(intunefake.RevocationRequest{SerialNumber: serial, IssuerName: "CN=CA", CAConfiguration: caConfig})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestDownloadRevocationRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{CoolDown: time.Hour}, nil)
	var rcs []string
	for _, s := range []string{"0A", "0B", "0C"} {
		rcs = append(rcs, enqueue(t, e.fake, s, "CN=CA"))
	}
	got, err := e.client.DownloadRevocationRequests(t.Context(), 0)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	want := []intune.RevocationRequest{
		{RequestContext: rcs[0], SerialNumber: "0A", IssuerName: "CN=CA", CAConfiguration: "CN=CA"},
		{RequestContext: rcs[1], SerialNumber: "0B", IssuerName: "CN=CA", CAConfiguration: "CN=CA"},
		{RequestContext: rcs[2], SerialNumber: "0C", IssuerName: "CN=CA", CAConfiguration: "CN=CA"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items = %+v\nwant %+v", got, want)
	}
	post := e.fake.Requests(intunefake.RouteDownload)[0]
	if b, w := bodyOf(t, post), mustJSON(t, `{"downloadParameters":{"maxRequests":100,"issuerName":null}}`); !reflect.DeepEqual(any(b), w) {
		t.Errorf("body = %v, want %v", b, w)
	}
	if v := post.Header.Get("api-version"); v != "5019-05-05" {
		t.Errorf("api-version = %q, want 5019-05-05", v)
	}
	if !uuidRE.MatchString(post.Header.Get("client-request-id")) || post.Header.Get("UserAgent") != provider {
		t.Errorf("headers = %v", post.Header)
	}

	// Cool-down: an empty answer, not an error.
	got, err = e.client.DownloadRevocationRequests(t.Context(), 500)
	if err != nil || len(got) != 0 {
		t.Fatalf("download during cool-down = %v, %v; want empty", got, err)
	}
	// Acknowledge one; after the cool-down only the unacknowledged ones return.
	if err := e.client.UploadRevocationResults(t.Context(), []intune.RevocationResult{{RequestContext: rcs[0], Succeeded: true}}); err != nil {
		t.Fatal(err)
	}
	e.fake.Advance(61 * time.Minute)
	got, err = e.client.DownloadRevocationRequests(t.Context(), 1)
	if err != nil || len(got) != 1 || got[0].RequestContext != rcs[1] {
		t.Fatalf("after cool-down with max 1 = %+v, %v; want only %s", got, err, rcs[1])
	}
	if b := bodyOf(t, e.fake.Requests(intunefake.RouteDownload)[2]); b["downloadParameters"].(map[string]any)["maxRequests"] != mustJSON(t, "1") {
		t.Errorf("maxRequests sent = %v", b)
	}
	noRejections(t, e.fake)
}

func TestDownloadArguments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{}, nil)
	for _, n := range []int{-1, 501, 10000} {
		if _, err := e.client.DownloadRevocationRequests(t.Context(), n); !errors.Is(err, intune.ErrInvalidArgument) {
			t.Errorf("Download(%d) = %v, want ErrInvalidArgument", n, err)
		}
	}
	if n := len(e.fake.Journal()); n != 0 {
		t.Errorf("invalid arguments caused %d requests", n)
	}
	if _, err := e.client.DownloadRevocationRequests(t.Context(), 500); err != nil {
		t.Errorf("Download(500) = %v", err)
	}
}

func TestDownloadResponseHandling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		want  []intune.RevocationRequest
		isErr error
	}{
		{"empty", `{"value":[]}`, []intune.RevocationRequest{}, nil},
		{"extra members ignored", `{"@odata.context":"x","value":[{"requestContext":"r1","serialNumber":"01","issuerName":null,"extra":1}]}`,
			[]intune.RevocationRequest{{RequestContext: "r1", SerialNumber: "01"}}, nil},
		{"item without requestContext dropped", `{"value":[{"serialNumber":"01"},{"requestContext":"r2","serialNumber":"02","caConfiguration":"c"}]}`,
			[]intune.RevocationRequest{{RequestContext: "r2", SerialNumber: "02", CAConfiguration: "c"}}, nil},
		{"no value", `{"@odata.context":"x"}`, nil, intune.ErrMalformedResponse},
		{"null value", `{"value":null}`, nil, intune.ErrMalformedResponse},
		{"value not array", `{"value":{"requestContext":"r"}}`, nil, intune.ErrMalformedResponse},
		{"item with a serial that is not a string dropped", `{"value":[{"requestContext":"r","serialNumber":5},{"requestContext":"r2","serialNumber":"02"}]}`,
			[]intune.RevocationRequest{{RequestContext: "r2", SerialNumber: "02"}}, nil},
		{"items that are not objects dropped", `{"value":[1,"r",[],{"requestContext":"r2","serialNumber":"02"}]}`,
			[]intune.RevocationRequest{{RequestContext: "r2", SerialNumber: "02"}}, nil},
		{"Value capitalised", `{"Value":[]}`, nil, intune.ErrMalformedResponse},
		{"not json", `<html/>`, nil, intune.ErrMalformedResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intunefake.Options{}, nil)
			e.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Status: 200, Body: tc.body})
			got, err := e.client.DownloadRevocationRequests(t.Context(), 10)
			if tc.isErr != nil {
				if !errors.Is(err, tc.isErr) || got != nil {
					t.Fatalf("= %v, %v; want %v", got, err, tc.isErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("= %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	e := newEnv(t, intunefake.Options{}, nil)
	e.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Status: 503, Times: 1})
	if _, err := e.client.DownloadRevocationRequests(t.Context(), 10); err != nil {
		t.Errorf("download with one 503 = %v, want retried success", err)
	}
	e.fake.InjectFault(intunefake.RouteDownload, intunefake.Fault{Status: 500})
	if _, err := e.client.DownloadRevocationRequests(t.Context(), 10); !errors.Is(err, intune.ErrUnavailable) {
		t.Errorf("download with 500s = %v, want ErrUnavailable", err)
	}
}

func TestUploadRevocationResults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, intunefake.Options{RejectUnknownRequestContext: true}, nil)
	ok := enqueue(t, e.fake, "01", "")
	missing := enqueue(t, e.fake, "02", "")
	busy := enqueue(t, e.fake, "03", "")
	if _, err := e.client.DownloadRevocationRequests(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
	results := []intune.RevocationResult{
		{RequestContext: ok, Succeeded: true},
		{RequestContext: missing, ErrorCode: intune.RevocationCertificateNotFoundError, ErrorMessage: "serial 02 not issued here"},
		{RequestContext: busy, ErrorCode: intune.RevocationRetryableServiceException, ErrorMessage: "store unavailable"},
	}
	if err := e.client.UploadRevocationResults(t.Context(), results); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	post := e.fake.Requests(intunefake.RouteUpload)[0]
	want := mustJSON(t, `{"results":[
		{"requestContext":"`+ok+`","succeeded":true,"errorCode":"None","errorMessage":null},
		{"requestContext":"`+missing+`","succeeded":false,"errorCode":"CertificateNotFoundError","errorMessage":"serial 02 not issued here"},
		{"requestContext":"`+busy+`","succeeded":false,"errorCode":"RetryableServiceException","errorMessage":"store unavailable"}]}`)
	if got := bodyOf(t, post); !reflect.DeepEqual(any(got), want) {
		t.Errorf("body = %v\nwant %v", got, want)
	}
	if v := post.Header.Get("api-version"); v != "5019-05-05" {
		t.Errorf("api-version = %q", v)
	}
	for rc, state := range map[string]intunefake.RevocationState{ok: intunefake.StateDone, missing: intunefake.StateFailed, busy: intunefake.StateQueued} {
		if it, _ := e.fake.Revocation(rc); it.State != state {
			t.Errorf("fake state of %s = %s, want %s", rc[:8], it.State, state)
		}
	}
	noRejections(t, e.fake)

	// Local rules: nothing is sent.
	bad := [][]intune.RevocationResult{
		nil,
		{},
		{{RequestContext: "", Succeeded: true}},
		{{RequestContext: ok, Succeeded: true, ErrorCode: intune.RevocationConflictError}},
		{{RequestContext: ok, Succeeded: true, ErrorMessage: "fine"}},
		{{RequestContext: ok, Succeeded: false}},
		{{RequestContext: ok, Succeeded: false, ErrorCode: 4242}},
	}
	for _, rs := range bad {
		if err := e.client.UploadRevocationResults(t.Context(), rs); !errors.Is(err, intune.ErrInvalidArgument) {
			t.Errorf("Upload(%+v) = %v, want ErrInvalidArgument", rs, err)
		}
	}
	if n := e.fake.Count(intunefake.RouteUpload); n != 1 {
		t.Errorf("invalid uploads were sent: %d POSTs", n)
	}
}

func TestUploadResponseHandling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault intunefake.Fault
		posts int
		isErr error
	}{
		{"value true string", intunefake.Fault{Status: 200, Body: `{"value":"true"}`}, 1, nil},
		{"value True string", intunefake.Fault{Status: 200, Body: `{"@odata.context":"x","value":"True"}`}, 1, nil},
		{"value false", intunefake.Fault{Status: 200, Body: `{"value":false}`}, 1, intune.ErrUploadNotAccepted},
		{"value false string", intunefake.Fault{Status: 200, Body: `{"value":"false"}`}, 1, intune.ErrUploadNotAccepted},
		{"value missing", intunefake.Fault{Status: 200, Body: `{}`}, 1, intune.ErrMalformedResponse},
		{"value null", intunefake.Fault{Status: 200, Body: `{"value":null}`}, 1, intune.ErrMalformedResponse},
		{"value number", intunefake.Fault{Status: 200, Body: `{"value":1}`}, 1, intune.ErrMalformedResponse},
		{"value yes", intunefake.Fault{Status: 200, Body: `{"value":"yes"}`}, 1, intune.ErrMalformedResponse},
		{"empty body", intunefake.Fault{Status: 200}, 1, intune.ErrMalformedResponse},
		{"500", intunefake.Fault{Status: 500}, 2, intune.ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, intunefake.Options{}, nil)
			if tc.fault.Body == "" && tc.fault.Status == 200 {
				tc.fault.Body = " "
			}
			e.fake.InjectFault(intunefake.RouteUpload, tc.fault)
			err := e.client.UploadRevocationResults(t.Context(), []intune.RevocationResult{{RequestContext: "r", Succeeded: true}})
			if tc.isErr == nil && err != nil || tc.isErr != nil && !errors.Is(err, tc.isErr) {
				t.Errorf("err = %v, want %v", err, tc.isErr)
			}
			if n := e.fake.Count(intunefake.RouteUpload); n != tc.posts {
				t.Errorf("POSTs = %d, want %d", n, tc.posts)
			}
		})
	}
}

func TestRevocationErrorCodes(t *testing.T) {
	t.Parallel()
	for code, name := range map[intune.RevocationErrorCode]string{
		intune.RevocationNone: "None", intune.RevocationCertificateNotFoundError: "CertificateNotFoundError",
		intune.RevocationAuthenticationException: "AuthenticationException", 4242: "4242",
	} {
		if code.String() != name {
			t.Errorf("%d.String() = %q, want %q", int(code), code.String(), name)
		}
	}
	if !intune.RevocationServiceTooBusyException.Retryable() || intune.RevocationConflictError.Retryable() || intune.RevocationNone.Retryable() {
		t.Error("Retryable classification is wrong")
	}
	for in, want := range map[string]intune.RevocationErrorCode{"None": 0, "certificatenotfounderror": 4004, "4101": 4101} {
		if got, ok := intune.ParseRevocationErrorCode(in); !ok || got != want {
			t.Errorf("ParseRevocationErrorCode(%q) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "4242", "Bogus"} {
		if _, ok := intune.ParseRevocationErrorCode(in); ok {
			t.Errorf("ParseRevocationErrorCode(%q) accepted", in)
		}
	}
}
