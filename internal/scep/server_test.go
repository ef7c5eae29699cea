package scep_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sscep "github.com/smallstep/scep"
	mozpkcs7 "go.mozilla.org/pkcs7"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/httpx"
	"github.com/azscep/azscep/internal/scep"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

func TestGetCACaps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, path := range []string{"/api/scep/static", "/api/scep/static/pkiclient.exe", "/api/scep/STATIC"} {
		resp, body := e.do(t, http.MethodGet, e.ts.URL+path+"?operation=GetCACaps", "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", path, resp.StatusCode)
		}
		// Exactly these: advertising DES3 or SHA-1 would invite a downgrade (RFC 8894 §7).
		const want = "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nSCEPStandard\nRenewal\n"
		if string(body) != want {
			t.Errorf("%s: GetCACaps = %q, want %q", path, body, want)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GetCACaps Content-Type %q", ct)
		}
	}
}

func TestGetCACertChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	resp, body := e.do(t, http.MethodGet, e.url(epStatic)+"?operation=GetCACert", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-x509-ca-ra-cert" {
		t.Errorf("Content-Type %q", ct)
	}
	wantLength(t, resp, body)
	certs, err := sscep.CACerts(body)
	if err != nil {
		t.Fatal(err)
	}
	// RA first (clients encrypt to the first certificate with keyEncipherment), then the CA.
	if len(certs) != 2 || !certs[0].Equal(e.ca.RACert) || !certs[1].Equal(e.ca.Cert) {
		t.Fatalf("GetCACert returned %d certificates, want [RA, CA]", len(certs))
	}
	// An independent parser reads the same degenerate PKCS#7.
	p7, err := mozpkcs7.Parse(body)
	if err != nil {
		t.Fatalf("go.mozilla.org/pkcs7: %v", err)
	}
	if len(p7.Certificates) != 2 || !p7.Certificates[0].Equal(e.ca.RACert) || !p7.Certificates[1].Equal(e.ca.Cert) {
		t.Fatal("go.mozilla.org/pkcs7 reads another chain")
	}
	if len(p7.Signers) != 0 {
		t.Error("degenerate PKCS#7 has signers")
	}

	resp, _ = e.do(t, http.MethodPost, e.url(epStatic)+"?operation=GetCACert", "application/octet-stream", []byte{1})
	if resp.StatusCode != http.StatusMethodNotAllowed || !slices.Contains(resp.Header.Values("Allow"), http.MethodGet) {
		t.Errorf("POST GetCACert: HTTP %d, Allow %v; want 405 with Allow: GET", resp.StatusCode, resp.Header.Values("Allow"))
	}
}

// TestCADecryptMode covers the endpoint for operators who refuse any software key: GetCACert returns the
// CA certificate alone, and the CA key opens envelopes and signs CertReps.
func TestCADecryptMode(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, testca.Options{KeyType: testca.KeyRSA, NoRA: true})
	e := newEnv(t, envOptions{ca: ca, endpoints: []*scep.Endpoint{{Name: "single", Challenge: scep.ChallengeStatic,
		Secret: []byte(staticSecret), Profile: testProfile(t), UseCA: true}}})
	resp, body := e.do(t, http.MethodGet, e.url("single")+"?operation=GetCACert", "", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" {
		t.Fatalf("HTTP %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(body, ca.Cert.Raw) {
		t.Fatal("GetCACert in CA mode is not the CA certificate's DER")
	}

	c := e.client(t, 0, "single-device")
	rep := e.pki(t, "single", c.PKCSReq(t, csrFor(t, c, "single-device"))) // verified against the CA certificate
	cert := wantSuccess(t, rep)
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
}

// TestCAModeBuildsNoCertRepEarly: where the CA key signs CertReps (a Key Vault operation in Azure), none is signed
// before the issued record is written, so a failed write (here every try of it) spends no signature on an answer
// thrown away.
func TestCAModeBuildsNoCertRepEarly(t *testing.T) {
	t.Parallel()
	ca := testca.New(t, testca.Options{KeyType: testca.KeyRSA, NoRA: true})
	caKey, ok := ca.Keys.CASigner.(custody.RAKey)
	if !ok {
		t.Fatal("the RSA CA key cannot decrypt")
	}
	signed := make(chan struct{}, 8)
	keys := &custody.Keys{Chain: ca.Keys.Chain, CASigner: signalingRA{RAKey: caKey, signed: signed}}
	var fs *storetest.FaultStore
	var updates atomic.Int32
	var early atomic.Bool
	e := newEnv(t, envOptions{ca: ca, keys: keys, wrap: func(s store.Store) store.Store {
		fs = storetest.NewFaultStore(s)
		fs.OnCall(func(method string) {
			if method != storetest.MethodUpdate || updates.Add(1) != 1 { // the failing pending → issued write
				return
			}
			select { // an answer built early would be signed while this write is held
			case <-signed:
				early.Store(true)
			case <-time.After(500 * time.Millisecond):
			}
		})
		return fs
	}, endpoints: []*scep.Endpoint{{Name: "single", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret),
		Profile: testProfile(t), UseCA: true}}})
	fs.Inject(storetest.Fault{Method: storetest.MethodUpdate}) // the issued-record write fails, every try
	c := e.client(t, 0, "single-early")
	resp, _ := testca.Post(t, e.url("single"), c.PKCSReq(t, csrFor(t, c, "single-early")).Raw)
	if resp.StatusCode != http.StatusServiceUnavailable || early.Load() || len(signed) != 0 {
		t.Fatalf("HTTP %d, CertRep signed during the write %v, %d more; want 503 and no signature",
			resp.StatusCode, early.Load(), len(signed))
	}
	fs.Clear()
	c = e.client(t, 1, "single-early")
	wantSuccess(t, e.pki(t, "single", c.PKCSReq(t, csrFor(t, c, "single-early"))))
	if len(signed) != 1 {
		t.Fatalf("%d CertRep signatures for one enrollment, want 1", len(signed))
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	ca := theCA(t)
	e := newEnv(t, envOptions{})
	noRA := &custody.Keys{Chain: ca.Keys.Chain, CASigner: ca.Keys.CASigner}
	cases := []struct {
		name string
		cfg  scep.Config
	}{
		{"no keys", scep.Config{Issuer: e.issuer, Store: e.store}},
		{"short static secret", scep.Config{Keys: ca.Keys, Issuer: e.issuer, Store: e.store,
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: scep.ChallengeStatic, Secret: []byte("short"), Profile: testProfile(t)}}}},
		{"intune without client", scep.Config{Keys: ca.Keys, Issuer: e.issuer, Store: e.store,
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: scep.ChallengeIntune, Profile: testProfile(t)}}}},
		{"unknown challenge", scep.Config{Keys: ca.Keys, Issuer: e.issuer, Store: e.store,
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: "none", Profile: testProfile(t)}}}},
		{"no profile", scep.Config{Keys: ca.Keys, Issuer: e.issuer, Store: e.store,
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret)}}}},
		// An EC CA key cannot open RSA key transport, so CA-decrypt mode must be refused at start-up.
		{"CA mode with an EC CA", scep.Config{Keys: ca.Keys, Issuer: e.issuer, Store: e.store,
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret),
				Profile: testProfile(t), UseCA: true}}}},
		// Also when the key offers Decrypt whatever its type, as a Key Vault key does: an RA-mode endpoint that
		// hands out the CA alone would otherwise start and fail every enrollment.
		{"single-CA endpoint with an EC CA key that offers Decrypt", scep.Config{Issuer: e.issuer, Store: e.store,
			Keys: &custody.Keys{Chain: ca.Keys.Chain, CASigner: decryptingSigner{ca.Keys.CASigner}, RACert: ca.Keys.RACert, RAKey: ca.Keys.RAKey},
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret),
				Profile: testProfile(t), UseCA: true}}}},
		{"RA mode without an RA", scep.Config{Keys: noRA, Issuer: e.issuer, Store: e.store,
			Endpoints: []*scep.Endpoint{{Name: "x", Challenge: scep.ChallengeStatic, Secret: []byte(staticSecret),
				Profile: testProfile(t)}}}},
	}
	for _, tc := range cases {
		if _, err := scep.New(tc.cfg); err == nil {
			t.Errorf("%s: New accepted the configuration", tc.name)
		}
	}
}

func TestTransport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "transport")
	real := c.PKCSReq(t, csrFor(t, c, "transport")).Raw
	op := e.url(epStatic) + "?operation=PKIOperation"

	random := make([]byte, 2048)
	_, _ = rand.Read(random)
	const depth = 16000 // 64,000 bytes: inside the cap, far beyond any real message's nesting
	bomb := append(bytes.Repeat([]byte{0x30, 0x80}, depth), bytes.Repeat([]byte{0, 0}, depth)...)

	cases := []struct {
		name        string
		method      string
		url         string
		contentType string
		body        []byte
		want        int
	}{
		{"over the cap", http.MethodPost, op, "application/x-pki-message", make([]byte, 64<<10+1), http.StatusRequestEntityTooLarge},
		{"at the cap, garbage", http.MethodPost, op, "application/x-pki-message", make([]byte, 64<<10), http.StatusBadRequest},
		{"30 82", http.MethodPost, op, "application/x-pki-message", []byte{0x30, 0x82}, http.StatusBadRequest},
		{"30 81", http.MethodPost, op, "application/x-pki-message", []byte{0x30, 0x81}, http.StatusBadRequest},
		{"1F 80", http.MethodPost, op, "application/x-pki-message", []byte{0x1f, 0x80}, http.StatusBadRequest},
		{"30 84 01", http.MethodPost, op, "application/x-pki-message", []byte{0x30, 0x84, 0x01}, http.StatusBadRequest},
		{"truncated PKCSReq", http.MethodPost, op, "application/x-pki-message", real[:len(real)/2], http.StatusBadRequest},
		{"trailing data", http.MethodPost, op, "application/x-pki-message", append(append([]byte{}, real...), 0x30, 0x00), http.StatusBadRequest},
		{"random bytes", http.MethodPost, op, "application/x-pki-message", random, http.StatusBadRequest},
		{"nesting bomb", http.MethodPost, op, "application/x-pki-message", bomb, http.StatusBadRequest},
		{"empty body", http.MethodPost, op, "application/x-pki-message", nil, http.StatusBadRequest},
		{"wrong content type", http.MethodPost, op, "text/plain", real, http.StatusUnsupportedMediaType},
		{"json content type", http.MethodPost, op, "application/json", real, http.StatusUnsupportedMediaType},
		{"PUT", http.MethodPut, op, "application/x-pki-message", real, http.StatusMethodNotAllowed},
		{"DELETE", http.MethodDelete, op, "", nil, http.StatusMethodNotAllowed},
		{"missing operation", http.MethodGet, e.url(epStatic), "", nil, http.StatusBadRequest},
		{"unknown operation", http.MethodGet, e.url(epStatic) + "?operation=GetNextCACert", "", nil, http.StatusBadRequest},
		{"unknown endpoint", http.MethodGet, e.url("nope") + "?operation=GetCACaps", "", nil, http.StatusNotFound},
		{"GET without message", http.MethodGet, op, "", nil, http.StatusBadRequest},
		{"GET message not base64", http.MethodGet, op + "&message=%%%21%21", "", nil, http.StatusBadRequest},
		{"GET message base64 of garbage", http.MethodGet, op + "&message=" + base64.StdEncoding.EncodeToString(random), "", nil, http.StatusBadRequest},
	}
	for _, tc := range cases {
		resp, body := e.do(t, tc.method, tc.url, tc.contentType, tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: HTTP %d %q, want %d", tc.name, resp.StatusCode, body, tc.want)
			continue
		}
		if tc.want == http.StatusMethodNotAllowed {
			allow := resp.Header.Values("Allow")
			if !slices.Contains(allow, http.MethodGet) || !slices.Contains(allow, http.MethodPost) {
				t.Errorf("%s: Allow %v, want GET and POST", tc.name, allow)
			}
		}
		if tc.want == http.StatusBadRequest && bytes.Contains(body, []byte("pkcs7")) {
			t.Errorf("%s: the answer leaks parser internals: %q", tc.name, body)
		}
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("bad requests left %d records", n)
	}

	// The accepted content types: application/x-pki-message (above), application/octet-stream and none at all.
	for i, ct := range []string{"application/octet-stream", "", "application/x-pki-message; charset=binary"} {
		cl := e.client(t, 1+i, "ct")
		req := cl.PKCSReq(t, csrFor(t, cl, "ct"))
		resp, body := e.do(t, http.MethodPost, op, ct, req.Raw)
		wantSuccess(t, e.certRep(t, resp, body, req))
	}
}

// TestGETMessageCap: a GET PKIOperation's message is held to the POST body cap once decoded — one byte over it is
// 413, as for POST, not handed to the parser —, while a message at the cap is read however its query is escaped
// (here every character percent-escaped, three times its base64 length).
func TestGETMessageCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	op := e.url(epStatic) + "?operation=PKIOperation&message="
	message := func(n int) []byte {
		b := make([]byte, n)
		b[0], b[1] = 0x30, 0x80
		return b
	}
	escapeEvery := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, "%%%02X", s[i])
		}
		return b.String()
	}
	cases := []struct {
		name, query string
		want        int
	}{
		{"one byte over, base64url", base64.RawURLEncoding.EncodeToString(message(httpx.MaxBody + 1)), http.StatusRequestEntityTooLarge},
		{"one byte over, base64 query-escaped", escapeAll(base64.StdEncoding.EncodeToString(message(httpx.MaxBody + 1))),
			http.StatusRequestEntityTooLarge},
		{"at the cap, every character escaped", escapeEvery(base64.StdEncoding.EncodeToString(message(httpx.MaxBody))),
			http.StatusBadRequest},
		{"a query longer than any message under the cap", strings.Repeat("%41", 110000), http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		resp, body := e.do(t, http.MethodGet, op+tc.query, "", nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s (%d-byte query): HTTP %d %q, want %d", tc.name, len(tc.query), resp.StatusCode, body, tc.want)
		}
	}
}

// TestUnsupportedMessageTypes: UpdateReq (18) and unknown types get a signed FAILURE badRequest, never a crash
// (smallstep/scep's String methods panic on unknown values).
func TestUnsupportedMessageTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.client(t, 0, "types")
	csr := csrFor(t, c, "types")
	for _, mt := range []string{testca.MsgUpdateReq, "99", testca.MsgCertRep, "0", "1234"} {
		rep := e.pki(t, epStatic, c.Message(t, testca.Message{Type: mt, Content: csr.Raw}))
		wantFailure(t, rep, testca.FailBadRequest)
	}
	if n := len(e.records(t)); n != 0 {
		t.Fatalf("%d records after refused message types", n)
	}
}

func TestDecodeGETMessage(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3001) // not a multiple of 3: the encoding ends in padding
	_, _ = rand.Read(data)
	std := base64.StdEncoding.EncodeToString(data)
	if !strings.Contains(std, "+") || !strings.Contains(std, "/") || !strings.HasSuffix(std, "=") {
		t.Fatal("test data does not exercise the base64 quirks")
	}
	variants := map[string]string{
		"unescaped":             std,
		"query-escaped":         escapeAll(std),
		"plus as %20 (host)":    strings.ReplaceAll(escapeAll(std), "%2B", "%20"),
		"plus as raw space":     strings.ReplaceAll(std, "+", " "),
		"macOS: only = escaped": strings.ReplaceAll(std, "=", "%3D"),
		"double-escaped":        strings.ReplaceAll(escapeAll(std), "%", "%25"),
		"line-wrapped":          std[:76] + "\r\n" + std[76:],
		"raw url base64":        base64.RawURLEncoding.EncodeToString(data),
	}
	for name, v := range variants {
		for _, q := range []string{"message=" + v, "operation=PKIOperation&message=" + v} {
			got, err := scep.DecodeGETMessage(q)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s (%.30s…): err %v, equal %v", name, q, err, bytes.Equal(got, data))
			}
		}
	}
	for _, bad := range []string{"", "operation=PKIOperation", "message=", "message=%zz", "message=***", "message=YW=Jj"} {
		if _, err := scep.DecodeGETMessage(bad); err == nil {
			t.Errorf("DecodeGETMessage(%q) accepted", bad)
		}
	}
}

// escapeAll percent-encodes the base64 specials as url.QueryEscape does.
func escapeAll(s string) string {
	return strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(s)
}

func TestDegenerate(t *testing.T) {
	t.Parallel()
	ca := theCA(t)
	body, err := scep.Degenerate(ca.Keys.Chain)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := mozpkcs7.Parse(body)
	if err != nil || len(p7.Certificates) != 1 || !p7.Certificates[0].Equal(ca.Cert) {
		t.Fatalf("degenerate: %v", err)
	}
}

// decryptingSigner is a signer that offers Decrypt whatever its key type, as a Key Vault key does.
type decryptingSigner struct{ crypto.Signer }

func (decryptingSigner) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, errors.New("decryptingSigner: cannot decrypt")
}
