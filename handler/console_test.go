package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/console"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/store"
)

// The certificate console in a real browser: Debian's headless Chromium driven over the DevTools protocol
// (chromedp), against the real handler in local mode and Azurite. One browser, one tab, one walk through every
// view; screenshots of each view go to .local/console/ (docs/console-*.png are copies of the main ones).

func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Debian's chromium is not installed: run `make test`, which installs it (make chromium-install)")
	return ""
}

// browserSession is one headless Chromium tab plus what the test watches: console messages and downloads.
type browserSession struct {
	t         *testing.T
	ctx       context.Context
	downloads string
	shots     string

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
	done     map[string]string // download GUID → file path, when completed
	used     map[string]bool   // downloads already returned
	doneCh   chan struct{}
}

func newBrowser(t *testing.T) *browserSession {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true), chromedp.Flag("mute-audio", true),
		chromedp.Flag("lang", "en-US"), chromedp.Env("TZ=Europe/Berlin"),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser with no deadline; steps get their own
		t.Fatalf("starting chromium: %v", err)
	}
	b := &browserSession{t: t, ctx: ctx, downloads: t.TempDir(), shots: filepath.Join("..", ".local", "console"),
		done: map[string]string{}, used: map[string]bool{}, doneCh: make(chan struct{}, 16)}
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	go func() {
		for ev, err := range progress {
			if err != nil {
				return
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				b.mu.Lock()
				b.done[ev.GUID] = filepath.Join(b.downloads, ev.GUID)
				b.mu.Unlock()
				b.doneCh <- struct{}{}
			}
		}
	}()
	on := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: b.downloads, EventsEnabled: &on}); err != nil {
		t.Fatalf("download behaviour: %v", err)
	}
	return b
}

// browserStep is the deadline of one browser step (an action, an evaluation, a wait). Generous: on a 2-core machine
// busy with other builds and tests a page took more than 15 s to draw its first list, and the test failed for the
// machine, not the console; a console that never gets there still fails the step.
const browserStep = 30 * time.Second

// do runs steps with a deadline, failing the test with the step name.
func (b *browserSession) do(name string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(name, " ", "-"))
		b.t.Fatalf("%s: %v", name, err)
	}
}

// eval evaluates a JavaScript expression and returns its value.
func eval[T any](b *browserSession, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it holds (the page's own state, not a sleep). A poll
// that a navigation interrupts (its execution context or target is replaced) starts again in the new document.
func (b *browserSession) waitFor(name, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond))
		if err == nil {
			return
		}
		if ctx.Err() == nil && (strings.Contains(err.Error(), "context") || strings.Contains(err.Error(), "navigated") ||
			strings.Contains(err.Error(), "active page")) {
			continue
		}
		b.shot("failed-" + strings.ReplaceAll(name, " ", "-"))
		b.t.Fatalf("waiting for %s (%s): %v\npage text: %s", name, cond, err, eval[string](b, "document.body.innerText"))
	}
}

func (b *browserSession) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), buf, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

// shotViewport saves what the window shows (a long page's full screenshot would be mostly the same rows).
func (b *browserSession) shotViewport(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), buf, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

// download clicks sel and returns the bytes of the file the browser saved (downloads are one at a time).
func (b *browserSession) download(sel string) []byte {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
	timeout := time.After(15 * time.Second)
	for {
		b.mu.Lock()
		for guid, p := range b.done {
			if !b.used[guid] {
				b.used[guid] = true
				b.mu.Unlock()
				data, err := os.ReadFile(p)
				if err != nil {
					b.t.Fatalf("reading the download of %s: %v", sel, err)
				}
				return data
			}
		}
		b.mu.Unlock()
		select {
		case <-b.doneCh:
		case <-timeout:
			b.t.Fatalf("no download completed after clicking %s", sel)
		}
	}
}

// wantNoProblems fails t if the page logged anything that means it is broken (problems).
func (b *browserSession) wantNoProblems(t *testing.T) {
	t.Helper()
	if p := b.problems(); len(p) > 0 {
		t.Errorf("console errors: %s", strings.Join(p, "\n"))
	}
}

// problems are the console messages that mean the page is broken: exceptions, console.error calls and browser log
// errors (a CSP violation is one). Failed requests the test provokes on purpose (401, 403) are logged by the
// browser as network errors and are not the page's fault, so they are left out.
func (b *browserSession) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException && m.Type != chromedp.ConsoleWarning {
			continue
		}
		if strings.Contains(m.Text, "Failed to load resource: the server responded with a status of 40") {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
	}
	return out
}

// devTokenAs mints a token for upn from the running service's development issuer.
func devTokenAs(t *testing.T, base, upn string, roles ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"roles": roles, "upn": upn})
	resp, err := http.Post(base+"/api/dev/token", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("dev token: %v (status %d)", err, resp.StatusCode)
	}
	return tok.AccessToken
}

// issueNumbered issues n server certificates over /api/csr, the i-th for the DNS name (and CN) nameFormat with i and
// requested by the CSR.Request.Db user userFormat with i: a list for the console to show, page and search.
func issueNumbered(t *testing.T, base, nameFormat, userFormat string, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf(nameFormat, i)
		issueViaAPI(t, base, devTokenAs(t, base, fmt.Sprintf(userFormat, i), "CSR.Request.Db"), pkix.Name{CommonName: name}, name)
	}
}

// issueViaAPI gets a certificate for subject over /api/csr with a CSR.Request.Db token and returns it.
func issueViaAPI(t *testing.T, base, token string, subject pkix.Name, dns ...string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/csr", bytes.NewReader(der))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/pkcs10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("issuing %s: %d %s", subject, resp.StatusCode, body)
	}
	c, err := x509.ParseCertificate(body)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ocspStatus(t *testing.T, base string, leaf, issuer *x509.Certificate) *ocsp.Response {
	t.Helper()
	reqDER, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/api/ocsp", "application/ocsp-request", bytes.NewReader(reqDER))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		t.Fatalf("OCSP response: %v", err)
	}
	return r
}

func TestConsoleInBrowser(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true", "AZSCEP_PROFILE_SERVER=validity=90d;eku=serverAuth;dns=*.contoso.example",
		"AZSCEP_API_PROFILES=server")
	ctx := context.Background()
	caPEM, _ := os.ReadFile(filepath.Join(svc.cfg.LocalKeyDir, "ca.pem"))
	cas, err := custody.ParsePEMCertificates(caPEM)
	if err != nil || len(cas) == 0 {
		t.Fatalf("CA certificate: %v", err)
	}

	// Data: 27 server certificates (more than one page of 25), one whose subject is markup, a stale pending
	// record and a recorded sync run.
	// One requester per certificate: /api/csr limits each caller to 5 requests a second.
	var target *x509.Certificate
	for i := range 27 {
		tok := devTokenAs(t, svc.base, fmt.Sprintf("builder-%02d@azscep.local", i), "CSR.Request.Db")
		name := fmt.Sprintf("app-%02d.contoso.example", i)
		c := issueViaAPI(t, svc.base, tok, pkix.Name{CommonName: name}, name)
		if i == 7 {
			target = c
		}
	}
	markup := pkix.Name{CommonName: "<script>window.__xss=1</script>", Organization: []string{`<img src=x onerror="window.__xss=2">`}}
	issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "mallory@azscep.local", "CSR.Request.Db"), markup)
	stale := &store.Record{Serial: "5CA1AB1E0001", Status: store.StatusPending, Subject: "CN=half-done.contoso.example",
		Issuer: cas[0].Subject.String(), NotBefore: time.Now(), NotAfter: time.Now().Add(24 * time.Hour), Source: store.SourceSCEP,
		Endpoint: "static", Profile: "device", Requester: "static", Created: time.Now().Add(-2 * time.Hour)}
	if err := svc.store.Insert(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if err := svc.store.RecordRun(ctx, store.SyncRun{ID: "run-1", Started: time.Now().Add(-65 * time.Minute),
		Finished: time.Now().Add(-64 * time.Minute), Trigger: "timer", Downloaded: 3, Revoked: 2, NotFound: 1, Uploaded: 3,
		Errors: []string{"CertificateNotFoundError for serial 0BADC0DE"}}); err != nil {
		t.Fatal(err)
	}
	page := svc.base + "/api/console/"

	// Sign in through the dev issuer's authorization-code + PKCE flow.
	b.do("open console", chromedp.Navigate(page))
	b.waitFor("sign-in page", `!!document.querySelector("#signin")`)
	if got := eval[string](b, `document.querySelector("h1").textContent`); !strings.Contains(got, "Sign in") {
		t.Fatalf("first view %q, want the sign-in page", got)
	}
	b.shot("signin")
	b.do("start sign-in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("dev issuer form", `location.pathname === "/api/dev/authorize" && !!document.querySelector("#upn")`)
	b.shot("dev-signin")
	b.do("sign in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("certificate list", `document.querySelectorAll("table.list tbody tr").length > 0`)
	if s := eval[string](b, `location.search`); s != "" {
		t.Errorf("the authorization code stays in the URL: %q", s)
	}
	if n := eval[int](b, `localStorage.length`); n != 0 {
		t.Errorf("localStorage holds %d entries; tokens belong in memory or sessionStorage", n)
	}
	if !eval[bool](b, `(sessionStorage.getItem("azscep.console.session")||"").includes("eyJ")`) {
		t.Error("no token in sessionStorage after sign-in")
	}
	if who := eval[string](b, `document.querySelector("#user-name").textContent`); who != "admin@azscep.local" {
		t.Errorf("header shows %q, want the signed-in UPN", who)
	}

	// Paging: 28 issued + 1 pending = 29 records; page 1 has 25 and a next page.
	if n := eval[int](b, `document.querySelectorAll("table.list tbody tr").length`); n != 25 {
		t.Errorf("page 1 has %d rows, want 25", n)
	}
	b.shot("certificates")
	b.do("next page", chromedp.Click(chromedp.ID("next-page")))
	b.waitFor("page 2", `(document.querySelector("caption")||{}).textContent?.startsWith("Page 2")`)
	if n := eval[int](b, `document.querySelectorAll("table.list tbody tr").length`); n != 4 {
		t.Errorf("page 2 has %d rows, want 4", n)
	}
	b.do("previous page", chromedp.Click(chromedp.ID("prev-page")))
	b.waitFor("page 1 again", `(document.querySelector("caption")||{}).textContent?.startsWith("Page 1")`)

	// Markup in a subject renders as text and runs nothing.
	b.do("search markup", chromedp.SendKeys(chromedp.ID("q"), "window.__xss\n"))
	b.waitFor("markup result", `document.querySelectorAll("table.list tbody tr").length === 1`)
	if got := eval[string](b, `document.querySelector("a.subject").textContent`); !strings.Contains(got, "<script") || !strings.Contains(got, "<img src=x") {
		t.Errorf("subject renders as %q, want the literal markup", got)
	}
	b.do("open markup certificate", chromedp.Click(chromedp.CSS("a.subject")))
	b.waitFor("markup details", `!!document.querySelector(".subject-title")`)
	if eval[bool](b, `window.__xss !== undefined || document.querySelectorAll("main script, main img").length > 0`) {
		t.Error("a subject with markup created elements or ran script")
	}

	// Search by serial (keyboard only: type and press Enter) opens the certificate.
	serial := store.SerialString(target.SerialNumber)
	b.do("search serial", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("search form", `!!document.querySelector("#q")`)
	b.do("type serial", chromedp.SendKeys(chromedp.ID("q"), strings.ToLower(serial)+"\n"))
	b.waitFor("certificate details", fmt.Sprintf(`location.hash === "#/certificate/%s" && !!document.querySelector("#download-pem")`, serial))
	b.shot("certificate")
	if got := eval[string](b, `document.querySelector("time.when").title`); !strings.HasSuffix(got, " UTC") {
		t.Errorf("a date's hover text is %q, want the UTC time", got)
	}
	pemFile := b.download("#download-pem")
	if blk, _ := pem.Decode(pemFile); blk == nil || !bytes.Equal(blk.Bytes, target.Raw) {
		t.Errorf("downloaded PEM is not the certificate: %q", pemFile)
	}
	if der := b.download("#download-der"); !bytes.Equal(der, target.Raw) {
		t.Errorf("downloaded DER (%d bytes) is not the certificate", len(der))
	}

	// Revoke with a reason and a confirmation; OCSP says revoked.
	if r := ocspStatus(t, svc.base, target, cas[0]); r.Status != ocsp.Good {
		t.Fatalf("OCSP before revocation: %d, want good", r.Status)
	}
	b.do("choose reason", chromedp.SetValue(chromedp.ID("reason"), "keyCompromise"),
		chromedp.SendKeys(chromedp.ID("comment"), "lost on a train"), chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("confirmation dialog", `document.querySelector("#confirm-revoke").open`)
	b.shotViewport("revoke-confirm")
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitFor("revoked notice", `!!document.querySelector("#revoke-result .notice.ok")`)
	// The outcome names the reason as the form offered it, not the CRL's identifier.
	if got := eval[string](b, `document.querySelector("#revoke-result").innerText`); !strings.Contains(got, "as revoked (key compromise).") {
		t.Errorf("the revocation's outcome does not name its reason in words: %q", got)
	}
	// The revocation's comment is shown with the certificate, where the admin who looks later reads why.
	b.waitFor("the comment shown", `[...document.querySelectorAll(".card")].some(c => c.innerText.includes("Comment or reference") && c.innerText.includes("lost on a train"))`)
	// So is the key's compromise mark: this revocation wrote it.
	b.waitFor("the key's compromise shown", `(document.querySelector("#key-compromised")||{}).innerText?.includes("with this certificate")`)
	b.shot("revoked")
	if r := ocspStatus(t, svc.base, target, cas[0]); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
		t.Errorf("OCSP after revocation: status %d reason %d, want revoked/keyCompromise", r.Status, r.RevocationReason)
	}
	if rec, err := svc.store.Get(ctx, serial); err != nil || !strings.HasPrefix(rec.RevokedBy, "admin:admin@azscep.local") {
		t.Errorf("revocation audit: %+v %v", rec, err)
	}

	// Submit a CSR (paste) and download the certificate.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web.contoso.example"},
		DNSNames: []string{"web.contoso.example"}}, key)
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	b.do("request view", chromedp.Navigate(page+"#/request"))
	b.waitFor("request form", `!!document.querySelector("#csr") && document.querySelectorAll("#profile option").length > 0`)
	b.waitFor("profile choices", `[...document.querySelectorAll("#profile option")].some(o => o.value === "server")`)
	b.do("paste CSR", chromedp.SetValue(chromedp.ID("csr"), csrPEM), chromedp.SetValue(chromedp.ID("profile"), "server"))
	b.do("profile details", chromedp.Evaluate[chromedp.Void](`document.querySelector("#profile").dispatchEvent(new Event("change"))`))
	b.waitFor("server profile shown", `document.querySelector("#profile-info").textContent.includes("serverAuth")`)
	b.do("submit CSR", chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("issued", `!!document.querySelector("#download-chain")`)
	b.shot("request")
	chain, err := custody.ParsePEMCertificates(b.download("#download-chain"))
	if err != nil || len(chain) < 2 || !chain[0].PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) || chain[0].Subject.CommonName != "web.contoso.example" {
		t.Fatalf("downloaded chain: %d certificates, %v", len(chain), err)
	}
	if eku := chain[0].ExtKeyUsage; len(eku) != 1 || eku[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("certificate from the chosen profile has EKU %v, want serverAuth", eku)
	}

	// The CA overview and the operations view.
	b.do("overview", chromedp.Navigate(page+"#/overview"))
	b.waitFor("overview", `[...document.querySelectorAll("h2")].some(h => h.textContent === "CRL") && !!document.querySelector(".facts")`)
	ov := eval[string](b, `document.querySelector("main").innerText`)
	for _, want := range []string{cas[0].Subject.CommonName, "SCEP RA certificate", "CRL number", "static", "device", "api", "server", "serverAuth"} {
		if !strings.Contains(ov, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	b.shot("overview")
	b.do("operations", chromedp.Navigate(page+"#/operations"))
	b.waitFor("operations", `document.querySelectorAll("table.list").length === 2`)
	ops := eval[string](b, `document.querySelector("main").innerText`)
	for _, want := range []string{"5CA1AB1E0001", "half-done.contoso.example", "CertificateNotFoundError", "timer"} {
		if !strings.Contains(ops, want) {
			t.Errorf("operations view lacks %q", want)
		}
	}
	b.shot("operations")

	// Usability: every form control has a label; narrow window / 200% zoom does not scroll sideways.
	b.do("certificates again", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("list", `document.querySelectorAll("table.list tbody tr").length > 0`)
	if unlabeled := eval[[]string](b, `[...document.querySelectorAll("input,select,textarea")].filter(e => !e.labels.length && !e.getAttribute("aria-label")).map(e => e.id || e.name)`); len(unlabeled) > 0 {
		t.Errorf("controls without a label: %v", unlabeled)
	}
	if _, err := chromedp.Call(b.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 640, Height: 1000, DeviceScaleFactor: 2}); err != nil {
		t.Fatal(err)
	}
	b.waitFor("narrow layout", `matchMedia("(max-width: 48rem)").matches`)
	if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
		t.Errorf("at 640 CSS px (1280 px at 200%%) the page scrolls sideways: %d > %d",
			eval[int](b, `document.documentElement.scrollWidth`), eval[int](b, `document.documentElement.clientWidth`))
	}
	b.shotViewport("narrow")
	if _, err := chromedp.Call(b.ctx, emulation.ClearDeviceMetricsOverride, struct{}{}); err != nil {
		t.Fatal(err)
	}

	// An expired or refused token: the page says so and offers to sign in again.
	b.do("spoil token", chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("azscep.console.session", JSON.stringify({token: "eyJ.bad.token", expires: Date.now() + 3600000}))`))
	b.do("reload", chromedp.Navigate(page+"#/overview"), chromedp.Reload())
	b.waitFor("expired message", `[...document.querySelectorAll(".notice h2")].some(h => h.textContent.includes("expired"))`)
	b.shot("expired")

	b.wantNoProblems(t)

	// The account checks' answers are explained, not shown as a missing role: the API's answer is replaced in the
	// page (the development issuer has no directory to disable an account in).
	for _, c := range []struct {
		status        int
		code, heading string
	}{
		{403, "account_disabled", "Your account is disabled"},
		{401, "sessions_revoked", "Your sessions were revoked"},
		{403, "guest_not_allowed", "Guest accounts are not admitted"},
	} {
		b.do("answer "+c.code, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
			window.__fetch = window.__fetch || window.fetch;
			window.fetch = (u, o) => /certificates/.test(String(u)) ? Promise.resolve(new Response(
				JSON.stringify({type: "about:blank", title: "x", status: %d, code: %q, detail: "from the test"}),
				{status: %d, headers: {"Content-Type": "application/problem+json"}})) : window.__fetch(u, o);
			location.hash = "#/certificates?q=" + Date.now();
		})()`, c.status, c.code, c.status)))
		b.waitFor(c.code+" message", fmt.Sprintf(`[...document.querySelectorAll(".notice h2")].some(h => h.textContent === %q)`, c.heading))
	}
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))

	// A user without an admin role (neither Certificates.Manage nor Certificates.Read) sees which role is missing.
	b.do("sign out", chromedp.Evaluate[chromedp.Void](`sessionStorage.clear()`), chromedp.Navigate(page+"#/certificates"), chromedp.Reload())
	b.waitFor("sign-in page", `!!document.querySelector("#signin")`)
	b.do("sign in as requester", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("dev issuer form", `!!document.querySelector("#upn")`)
	b.do("untick manage", chromedp.SetValue(chromedp.ID("upn"), "requester@azscep.local"),
		chromedp.Click(chromedp.CSS(`input[value="Certificates.Manage"]`)), chromedp.Click(chromedp.CSS(`input[value="Certificates.Read"]`)),
		chromedp.Click(chromedp.ID("signin")))
	b.waitFor("403 message", `[...document.querySelectorAll(".notice h2")].some(h => h.textContent === "Missing role: Certificates.Read or Certificates.Manage")`)
	if got := eval[string](b, `document.querySelector(".notice").innerText`); !strings.Contains(got, "requester@azscep.local") {
		t.Errorf("403 message does not name the user: %q", got)
	}
	b.shot("forbidden")

	b.wantNoProblems(t)

	// The Content-Security-Policy blocks an injected inline script (and reports the violation).
	blocked := eval[bool](b, `(() => {
		window.__violations = 0;
		document.addEventListener("securitypolicyviolation", () => window.__violations++);
		const s = document.createElement("script");
		s.textContent = "window.__injected = true";
		document.body.append(s);
		return window.__injected === undefined;
	})()`)
	if !blocked {
		t.Error("an injected inline script ran: the CSP does not block it")
	}
	b.waitFor("CSP violation event", `window.__violations > 0`)
}

// TestConsoleHeaders: the console's responses carry the strict policy, and the admin API stays closed to other
// origins (no CORS headers, even for a preflight).
func TestConsoleHeaders(t *testing.T) {
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	resp, err := http.Get(svc.base + "/api/console/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline code: %q", csp)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<script src="app.js" defer></script>`) {
		t.Fatalf("index: %d %s", resp.StatusCode, body)
	}
	var cfg map[string]string
	resp, err = http.Get(svc.base + "/api/console/config.json")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if cfg["mode"] != "dev" || cfg["authorize"] != "/api/dev/authorize" {
		t.Errorf("local config.json = %v, want the dev issuer", cfg)
	}
	req, _ := http.NewRequest(http.MethodOptions, svc.base+"/api/certificates", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("admin API answers CORS header %s", k)
		}
	}
}

// TestConsoleEntraModeLoadsMSAL: in Azure mode the page loads the embedded MSAL bundle under the strict CSP,
// MSAL initializes (session-storage cache) and the page offers Entra sign-in, with no console errors and nothing
// token-like in localStorage. Signing in itself needs Entra, which this machine cannot reach.
func TestConsoleEntraModeLoadsMSAL(t *testing.T) {
	b := newBrowser(t)
	srv := entraConsole(t)
	b.do("open console", chromedp.Navigate(srv.URL+console.Prefix))
	b.waitFor("Entra sign-in", `(document.querySelector("#signin")||{}).textContent === "Sign in with Microsoft Entra ID"`)
	if !eval[bool](b, `typeof window.msal.PublicClientApplication === "function"`) {
		t.Error("the MSAL bundle did not load")
	}
	if leaked := eval[[]string](b, `Object.keys(localStorage).filter(k => /token|secret/i.test(k + localStorage.getItem(k)))`); len(leaked) > 0 {
		t.Errorf("localStorage holds token-like entries: %v", leaked)
	}
	b.wantNoProblems(t)
	b.shot("entra-signin")
}

// entraConsole serves the console alone, in Azure mode (MSAL, Entra sign-in).
func entraConsole(t *testing.T) *httptest.Server {
	h, err := console.New(console.Config{Mode: console.ModeEntra, ClientID: "11111111-2222-4333-8444-555555555555",
		Scope:     "api://11111111-2222-4333-8444-555555555555/access_as_user",
		Authority: "https://login.microsoftonline.com/66666666-7777-4888-9999-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestConsoleEntraRenewsWithoutIframe: a signed-in admin's token is renewed from MSAL's cache or refresh token only,
// never by its hidden iframe, which this page (the redirect URI, frame-ancestors 'none') can never complete; once
// the refresh token has expired the page asks for a sign-in. MSAL's sign-in state is stubbed (an account, an
// expired refresh token): signing in needs Entra, which this machine cannot reach.
func TestConsoleEntraRenewsWithoutIframe(t *testing.T) {
	b := newBrowser(t)
	srv := entraConsole(t)
	stub := `(() => {
		let m;
		Object.defineProperty(window, "msal", { configurable: true, set(v) { m = v; }, get() {
			if (m && m.PublicClientApplication && !m.__stubbed) {
				const p = m.PublicClientApplication.prototype;
				p.initialize = async () => {};
				p.handleRedirectPromise = async () => null;
				p.getAllAccounts = () => [{ homeAccountId: "h", username: "admin@contoso.test" }];
				p.setActiveAccount = () => {};
				p.acquireTokenSilent = async (req) => {
					(window.__silent = window.__silent || []).push(req);
					throw new m.InteractionRequiredAuthError("refresh_token_expired");
				};
				m.__stubbed = true;
			}
			return m;
		} });
	})();`
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: stub}); err != nil {
		t.Fatal(err)
	}
	b.do("open console", chromedp.Navigate(srv.URL+console.Prefix))
	b.waitFor("a sign-in asked for", `(document.querySelector("#signin")||{}).textContent === "Sign in with Microsoft Entra ID" && (window.__silent||[]).length > 0`)
	policy := eval[[]float64](b, `window.__silent.map(r => r.cacheLookupPolicy === undefined ? -1 : r.cacheLookupPolicy)`)
	want := eval[float64](b, `window.msal.CacheLookupPolicy.AccessTokenAndRefreshToken`)
	for _, p := range policy {
		if p != want {
			t.Fatalf("acquireTokenSilent cacheLookupPolicy = %v; want AccessTokenAndRefreshToken (%v), which never uses the iframe", policy, want)
		}
	}
	b.wantNoProblems(t)
}

// TestConsoleRedirectURIRegistered: the Entra setup script registers the console as a SPA redirect URI of the API
// app registration, which the console signs in as (consoleConfig).
func TestConsoleRedirectURIRegistered(t *testing.T) {
	script, err := os.ReadFile("../infra/scripts/create-api-app.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{spa: {redirectUris:`, `/api/console/`, `AZSCEP_BASE_URL`, `--console-url`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("create-api-app.sh lacks %s", want)
		}
	}
	cfg := consoleConfig(&config.Config{API: config.APIConfig{Enabled: true, TenantID: "66666666-7777-4888-9999-000000000000",
		Audiences: []string{"11111111-2222-4333-8444-555555555555", "api://azscep"}, AuthorityHost: "https://login.microsoftonline.com/"}})
	if cfg.Mode != console.ModeEntra || cfg.ClientID != "11111111-2222-4333-8444-555555555555" || cfg.Scope != "api://azscep/access_as_user" ||
		cfg.Authority != "https://login.microsoftonline.com/66666666-7777-4888-9999-000000000000" {
		t.Errorf("Entra console config = %+v", cfg)
	}
	if cfg := consoleConfig(&config.Config{}); cfg.Mode != console.ModeDisabled {
		t.Errorf("without the API the console is %s, want disabled", cfg.Mode)
	}
}

// signedInConsole is the start of most console tests: a browser, a local CA with the development issuer, and the
// administrator (both roles) signed in to its console, whose URL it returns.
func signedInConsole(t *testing.T) (*browserSession, *localService, string) {
	t.Helper()
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	page := svc.base + "/api/console/"
	b.signIn(page)
	return b, svc, page
}

// signIn opens the console at page and signs in through the development issuer with the form's defaults
// (admin@azscep.local, both roles).
func (b *browserSession) signIn(page string) {
	b.t.Helper()
	b.do("open console", chromedp.Navigate(page))
	b.waitFor("sign-in page", `!!document.querySelector("#signin")`)
	b.do("start sign-in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("dev issuer form", `location.pathname === "/api/dev/authorize" && !!document.querySelector("#upn")`)
	b.do("sign in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("signed in", `location.pathname === "/api/console/" && !document.querySelector("#user").hidden`)
}

// signInReader opens the console at page and signs in through the development issuer as upn holding only
// Certificates.Read, then waits for the page to show that role.
func (b *browserSession) signInReader(page, upn string) {
	b.t.Helper()
	b.do("open console", chromedp.Navigate(page))
	b.waitFor("sign-in page", `!!document.querySelector("#signin")`)
	b.do("start sign-in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("dev issuer form", `location.pathname === "/api/dev/authorize" && !!document.querySelector("#upn")`)
	b.do("read only", chromedp.Evaluate[chromedp.Void](`(() => {
		document.querySelector("#upn").value = `+strconv.Quote(upn)+`;
		for (const box of document.querySelectorAll('input[name="role"]')) box.checked = box.value === "Certificates.Read";
	})()`))
	b.do("sign in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("role shown", `location.pathname === "/api/console/" && (document.querySelector("#user-role")||{}).textContent === "Certificates.Read (read only)"`)
}

// csrFor is a DER PKCS#10 request for cn (subject CN and DNS name) with a fresh P-256 key.
func csrFor(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestConsoleRevokeOutcomeShown: the page shows what a revocation did even when the API's answer and the page's
// own refresh disagree. The API answers 503 for a revocation that is already durable when only a later write
// failed (admin.revoke); and a revocation that succeeded is followed by a re-read that may fail on its own. In
// both the admin must see the certificate as revoked, not a bare error beside a stale "issued" and a live revoke
// form that invites a second revocation with another reason.
func TestConsoleRevokeOutcomeShown(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	first := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-a@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "first.contoso.example"})
	second := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-b@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "second.contoso.example"})
	page := svc.base + "/api/console/"
	b.signIn(page)

	// 1. The revocation is recorded, but the API answers 503 (as when the final generation bump fails).
	serial := store.SerialString(first.SerialNumber)
	b.do("open first", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("first details", `!!document.querySelector("#revoke-button")`)
	b.do("revoke answered 503", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.fetch = (u, o) => /\/revoke$/.test(String(u)) ? window.__fetch(u, o).then(() => new Response(
			JSON.stringify({title: "Service Unavailable", status: 503, code: "unavailable", detail: "a dependency is unavailable; retry later"}),
			{status: 503, headers: {"Content-Type": "application/problem+json", "Retry-After": "5"}})) : window.__fetch(u, o);
	})()`))
	b.do("choose reason", chromedp.SetValue(chromedp.ID("reason"), "keyCompromise"), chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("confirmation dialog", `document.querySelector("#confirm-revoke").open`)
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitFor("an answer", `!!document.querySelector("#revoke-result .notice")`)
	if rec, err := svc.store.Get(context.Background(), serial); err != nil || rec.Status != store.StatusRevoked {
		t.Fatalf("the injected 503 should follow a real revocation: %+v %v", rec, err)
	}
	b.waitFor("the page re-read the record", `(document.querySelector(".title-row .badge")||{}).textContent === "revoked" && !document.querySelector("#revoke-button")`)
	if got := eval[string](b, `document.querySelector("#revoke-result").innerText`); !strings.Contains(got, "revoked (key compromise)") || !strings.Contains(got, "503") {
		t.Errorf("the outcome does not say both the API's answer and the recorded revocation: %q", got)
	}
	b.shot("revoke-503-recorded")
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.do("complete the revocation", chromedp.Click(chromedp.ID("revoke-retry")))
	b.waitFor("completed", `(document.querySelector("#revoke-result .notice.ok")||{}).textContent?.includes("recorded reason is key compromise.")`)

	// 2. The revocation succeeds, but re-reading the certificate answers 503: the success is still reported.
	serial = store.SerialString(second.SerialNumber)
	b.do("open second", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("second details", `!!document.querySelector("#revoke-button") && document.title.includes("`+serial+`")`)
	b.do("refresh answered 503", chromedp.Evaluate[chromedp.Void](`(() => {
		let revoked = false;
		window.fetch = (u, o) => {
			if (/\/revoke$/.test(String(u))) return window.__fetch(u, o).then((r) => { revoked = true; return r; });
			if (revoked && /certificates\/[0-9A-F]+$/.test(String(u))) return Promise.resolve(new Response(
				JSON.stringify({title: "Service Unavailable", status: 503, code: "unavailable", detail: "a dependency is unavailable; retry later"}),
				{status: 503, headers: {"Content-Type": "application/problem+json"}}));
			return window.__fetch(u, o);
		};
	})()`))
	b.do("revoke second", chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("confirmation dialog", `document.querySelector("#confirm-revoke").open`)
	b.do("confirm second", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitFor("revoked notice despite the failed refresh", `(document.querySelector("#revoke-result .notice.ok")||{}).textContent?.startsWith("Revoked.")`)
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// runningRunJSON is the status of a sync run still running, as the admin API answers it.
func runningRunJSON(id string, started time.Time, trigger string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "state": "running", "started": started, "trigger": trigger,
		"resumed": 0, "downloaded": 0, "foreign": 0, "revoked": 0, "notFound": 0, "failed": 0, "uploaded": 0})
	return b
}

// TestConsoleSyncFollowed: a manual sync is answered 202 as soon as it has started, with its status resource in
// Location. The page says the run is running and polls the status until the run has ended — past a poll the
// network fails and one the CA briefly answers 503 — then shows that run's outcome (here: it failed on the way, with
// its counts and error lines) above the refreshed list of runs.
func TestConsoleSyncFollowed(t *testing.T) {
	b, svc, _ := signedInConsole(t)
	// Local mode has no Intune: the runs list says the sync is enabled, the POST and the status are answered as the
	// API answers them, and the test records the run's outcome when it lets the status say the run has ended.
	started := time.Now().Add(-time.Minute).UTC()
	run := store.SyncRun{ID: "run-failed", Started: started, Finished: time.Now(), Trigger: "admin",
		Downloaded: 4, Revoked: 3, Failed: 1, Errors: []string{"uploading results: Intune answered 503 Service Unavailable"},
		Error: "uploading results: Intune answered 503 Service Unavailable"}
	runningJSON := runningRunJSON(run.ID, run.Started, run.Trigger)
	endedJSON, _ := json.Marshal(map[string]any{"id": run.ID, "state": "failed", "started": run.Started, "finished": run.Finished,
		"trigger": run.Trigger, "downloaded": run.Downloaded, "revoked": run.Revoked, "failed": run.Failed, "uploaded": 0, "notFound": 0,
		"errors": run.Errors, "error": run.Error})
	b.do("sync enabled", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.__polls = 0;
		const json = (body, status, headers) => Promise.resolve(new Response(body, {status, headers: Object.assign({"Content-Type": "application/json"}, headers || {})}));
		window.fetch = (u, o) => {
			if (/revocation-sync\/run-failed$/.test(String(u))) {
				// The first poll meets the network briefly down, the second a CA briefly unavailable: the page polls on.
				if (++window.__polls === 1) return Promise.reject(new TypeError("Failed to fetch"));
				if (window.__polls === 2) return json('{"type":"about:blank","title":"Service Unavailable","status":503,"code":"unavailable","detail":"try again"}',
					503, {"Content-Type": "application/problem+json", "Retry-After": "1"});
				return json(window.__syncDone ? %q : %q, 200);
			}
			if (!/revocation-sync$/.test(String(u))) return window.__fetch(u, o);
			if (o && o.method === "POST") return json(%q, 202, {Location: "/api/certificates/revocation-sync/run-failed"});
			return window.__fetch(u, o).then((r) => r.json()).then((j) => new Response(JSON.stringify(Object.assign(j, {enabled: true})),
				{status: 200, headers: {"Content-Type": "application/json"}}));
		};
		location.hash = "#/operations";
	})()`, endedJSON, runningJSON, runningJSON)))
	b.waitFor("sync button", `!!document.querySelector("#sync-now")`)
	b.do("run a sync", chromedp.Click(chromedp.ID("sync-now")))
	b.waitFor("the run followed past two failed polls", `window.__polls >= 3 && (document.querySelector("#sync-result")||{}).innerText?.includes("is running")`)
	if got := eval[string](b, `document.querySelector("#sync-result").innerText`); !strings.Contains(got, "run-failed") {
		t.Errorf("while running the page says %q, want the run named", got)
	}
	if !eval[bool](b, `document.querySelector("#sync-now").disabled`) {
		t.Error("the sync button is enabled while the run is followed")
	}
	b.shot("sync-running")
	if err := svc.store.RecordRun(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	b.do("the run ends", chromedp.Evaluate[chromedp.Void](`window.__syncDone = true`))
	b.waitFor("the outcome", `!!document.querySelector("#sync-result .notice")`)
	got := eval[string](b, `document.querySelector("#sync-result").innerText`)
	for _, want := range []string{"failed on the way", "4 downloaded", "3 revoked", "Intune answered 503 Service Unavailable"} {
		if !strings.Contains(got, want) {
			t.Errorf("the ended run's outcome lacks %q: %q", want, got)
		}
	}
	if !eval[bool](b, `[...document.querySelectorAll("table.list td")].some(td => td.textContent.includes("Intune answered 503"))`) {
		t.Error("the list of runs was not refreshed after the run")
	}
	if eval[bool](b, `document.querySelector("#sync-now").disabled`) {
		t.Error("the sync button stays disabled after the run")
	}
	b.shot("sync-failed")
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// TestConsoleSyncFollowStopsOnNavigation: an administrator who starts a sync and moves on to another page while the
// last status poll is on its way stays on that page when the poll says the run has ended: following the run must
// not bring the sync page back over the page the administrator chose.
func TestConsoleSyncFollowStopsOnNavigation(t *testing.T) {
	b, _, _ := signedInConsole(t)
	started := time.Now().Add(-time.Minute).UTC()
	runningJSON := runningRunJSON("run-nav", started, "admin")
	endedJSON, _ := json.Marshal(map[string]any{"id": "run-nav", "state": "finished", "started": started, "finished": time.Now().UTC(),
		"trigger": "admin", "downloaded": 0, "revoked": 0, "failed": 0, "uploaded": 0, "notFound": 0})
	// The status poll is held until the test answers it; the run list is counted, and the POST answered 202.
	b.do("sync enabled", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.__polls = 0;
		window.__lists = 0;
		const json = (body, status, headers) => Promise.resolve(new Response(body, {status, headers: Object.assign({"Content-Type": "application/json"}, headers || {})}));
		window.fetch = (u, o) => {
			if (/revocation-sync\/run-nav$/.test(String(u))) {
				window.__polls++;
				return new Promise((ok) => { window.__answerPoll = () => {
					const r = new Response(%q, {status: 200, headers: {"Content-Type": "application/json"}});
					const read = r.json.bind(r);
					r.json = () => { window.__pollRead = true; return read(); };
					ok(r);
				}; });
			}
			if (!/revocation-sync$/.test(String(u))) return window.__fetch(u, o);
			if (o && o.method === "POST") return json(%q, 202, {Location: "/api/certificates/revocation-sync/run-nav"});
			window.__lists++;
			return window.__fetch(u, o).then((r) => r.json()).then((j) => new Response(JSON.stringify(Object.assign(j, {enabled: true})),
				{status: 200, headers: {"Content-Type": "application/json"}}));
		};
		location.hash = "#/operations";
	})()`, endedJSON, runningJSON)))
	b.waitFor("sync button", `!!document.querySelector("#sync-now")`)
	b.do("run a sync", chromedp.Click(chromedp.ID("sync-now")))
	b.waitFor("a status poll on its way", `window.__polls >= 1 && typeof window.__answerPoll === "function"`)
	b.do("move on", chromedp.Evaluate[chromedp.Void](`location.hash = "#/certificates"`))
	b.waitFor("the certificates page", `(document.querySelector("main h1")||{}).textContent === "Certificates"`)
	lists := eval[int](b, `window.__lists`)
	b.do("the run ends", chromedp.Evaluate[chromedp.Void](`window.__answerPoll()`))
	b.waitFor("the poll's answer read", `window.__pollRead === true`)
	if got := eval[string](b, `location.hash + " " + (document.querySelector("main h1")||{}).textContent`); got != "#/certificates Certificates" {
		t.Errorf("after the followed run ended the page is %q, want the certificates page the administrator moved to", got)
	}
	if got := eval[int](b, `window.__lists`); got != lists {
		t.Errorf("the sync page reloaded its runs (%d times) after the administrator had left it", got-lists)
	}
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// TestConsoleEndpointFilterRESTProfiles: the "Endpoint or profile" filter finds certificates issued over REST
// with each profile a caller may choose. /api/csr records its default profile's certificates under the endpoint
// "api" (whatever AZSCEP_API_PROFILE names) and a chosen profile's under that profile's name.
func TestConsoleEndpointFilterRESTProfiles(t *testing.T) {
	b := newBrowser(t)
	console := startRESTProfiles(t)
	b.signIn(console)
	for _, c := range []struct{ profile, subject string }{{"web", "CN=default.contoso.example"}, {"server", "CN=chosen.contoso.example"}} {
		if got, ok := filterByEndpoint(b, console, c.profile); ok && (len(got) != 1 || got[0] != c.subject) {
			t.Errorf("REST: %s finds %v, want [%s]", c.profile, got, c.subject)
		}
	}
}

// TestConsoleErrorViewShowsReason: a failed call shows the API's own answer (its problem code and detail, as text)
// and, when the answer carried Retry-After, when to try again, in every view that explains a failure with
// errorView: the list, one certificate, the CA overview and the operations view. A fixed "try again in a moment"
// would hide why the CA refused and how long the outage is expected to last.
func TestConsoleErrorViewShowsReason(t *testing.T) {
	b, _, _ := signedInConsole(t)
	b.waitFor("certificate list", `!!document.querySelector("#results table.list, #results .empty")`)
	// Every API call under /certificates answers 503 with a problem document; window.__retryAfter is its
	// Retry-After header (none when empty).
	b.do("answer 503", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.__retryAfter = "30";
		window.fetch = (u, o) => /\/certificates/.test(String(u)) ? Promise.resolve(new Response(
			JSON.stringify({title: "Service Unavailable", status: 503, code: "store_unavailable", detail: "Table Storage answered <b>ServerBusy</b>"}),
			{status: 503, headers: Object.assign({"Content-Type": "application/problem+json"},
				window.__retryAfter ? {"Retry-After": window.__retryAfter} : {})})) : window.__fetch(u, o);
	})()`))
	// show clears the page (so the view before cannot satisfy the wait), opens hash and returns the error's text.
	show := func(hash, heading string) string {
		b.t.Helper()
		b.do("open "+hash, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { document.querySelector("main").replaceChildren(); location.hash = %q; })()`, hash)))
		b.waitFor("error in "+hash, fmt.Sprintf(`location.hash === %q && (document.querySelector("main h1")||{}).textContent === %q && !!document.querySelector("main .notice.error")`, hash, heading))
		return eval[string](b, `document.querySelector("main .notice.error").innerText`)
	}
	for _, v := range []struct{ hash, heading string }{
		{"#/certificates?status=issued", "Certificates"},
		{"#/certificate/0BADC0DE", "Certificate"},
		{"#/overview", "CA overview"},
		{"#/operations", "Revocation sync and pending records"},
	} {
		got := show(v.hash, v.heading)
		for _, want := range []string{"503", "store_unavailable", "Table Storage answered <b>ServerBusy</b>", "Try again in 30 seconds"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: the error lacks %q: %q", v.hash, want, got)
			}
		}
		if !eval[bool](b, `!!document.querySelector("main .notice.error button")`) {
			t.Errorf("%s: no button to try again", v.hash)
		}
	}
	if eval[bool](b, `!!document.querySelector("main .notice b")`) {
		t.Error("the API's detail was parsed as markup")
	}
	b.shot("error-503")

	// Retry-After as an HTTP date: the time to try again, in the browser's time zone with UTC on hover.
	b.do("retry-after date", chromedp.Evaluate[chromedp.Void](`window.__retryAfter = new Date(Date.now() + 3 * 3600 * 1000).toUTCString()`))
	if got := show("#/overview?at", "CA overview"); !strings.Contains(got, "Try again after") || !eval[bool](b, `!!document.querySelector("main .notice.error time.when")`) {
		t.Errorf("an HTTP-date Retry-After is not shown as a time: %q", got)
	}
	// No Retry-After: the reason still shows, and no made-up time.
	b.do("no retry-after", chromedp.Evaluate[chromedp.Void](`window.__retryAfter = ""`))
	if got := show("#/certificates?status=revoked", "Certificates"); !strings.Contains(got, "store_unavailable") || strings.Contains(got, "Try again in 30") || strings.Contains(got, "Try again after") {
		t.Errorf("without Retry-After: %q", got)
	}

	// The button tries again.
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.do("try again", chromedp.Click(chromedp.CSS("main .notice.error button")))
	b.waitFor("the list after trying again", `!!document.querySelector("#results table.list, #results .empty")`)
	b.wantNoProblems(t)
}

// TestConsolePagingFollowsHistory: the pages of a result list follow the URL, so the browser's Back and Forward
// (and a reload) show the page's own number and a Previous button only where there is a previous page. A record
// of earlier pages kept beside the URL said "Page 3" on page 2 and "Page 2" on page 1 after Back.
func TestConsolePagingFollowsHistory(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	issueNumbered(t, svc.base, "page-%02d.contoso.example", "pager-%02d@azscep.local", 5)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `!!document.querySelector("#results table.list")`)

	type shown struct {
		Caption  string   `json:"caption"`
		Prev     bool     `json:"prev"`
		Next     bool     `json:"next"`
		Subjects []string `json:"subjects"`
	}
	// after runs step, clears the results at once (the navigation it starts is asynchronous, and the page before
	// must not satisfy the wait) and returns the page that then shows at hash.
	after := func(name, step, hash string) shown {
		b.t.Helper()
		b.do(name, chromedp.Evaluate[chromedp.Void](`(() => { `+step+`; document.querySelector("#results").replaceChildren(); })()`))
		cond := `!!document.querySelector("#results caption")`
		if hash != "" {
			cond = fmt.Sprintf(`location.hash === %q && `, hash) + cond
		}
		b.waitFor(name, cond)
		return eval[shown](b, `({caption: document.querySelector("#results caption").textContent,
			prev: !document.querySelector("#prev-page").disabled, next: !document.querySelector("#next-page").disabled,
			subjects: [...document.querySelectorAll("a.subject")].map(a => a.textContent)})`)
	}
	check := func(step string, got shown, pageNo int, prev, next bool, subjects []string) {
		b.t.Helper()
		if !strings.HasPrefix(got.Caption, fmt.Sprintf("Page %d:", pageNo)) || got.Prev != prev || got.Next != next ||
			(subjects != nil && strings.Join(got.Subjects, ",") != strings.Join(subjects, ",")) {
			t.Errorf("%s: caption %q, previous %v, next %v, rows %v; want page %d, previous %v, next %v, rows %v",
				step, got.Caption, got.Prev, got.Next, got.Subjects, pageNo, prev, next, subjects)
		}
	}

	p1 := after("two per page", `location.hash = "#/certificates?limit=2"`, "#/certificates?limit=2")
	check("page 1", p1, 1, false, true, nil)
	p2 := after("next to page 2", `document.querySelector("#next-page").click()`, "")
	check("page 2", p2, 2, true, true, nil)
	hash2 := eval[string](b, `location.hash`)
	p3 := after("next to page 3", `document.querySelector("#next-page").click()`, "")
	check("page 3", p3, 3, true, false, nil)

	check("Back to page 2", after("back to page 2", `history.back()`, hash2), 2, true, true, p2.Subjects)
	check("Back to page 1", after("back to page 1", `history.back()`, "#/certificates?limit=2"), 1, false, true, p1.Subjects)
	check("Forward to page 2", after("forward to page 2", `history.forward()`, hash2), 2, true, true, p2.Subjects)
	b.do("reload page 2", chromedp.Reload())
	b.waitFor("page 2 reloaded", `!!document.querySelector("#results caption")`)
	check("page 2 reloaded", eval[shown](b, `({caption: document.querySelector("#results caption").textContent,
		prev: !document.querySelector("#prev-page").disabled, next: !document.querySelector("#next-page").disabled,
		subjects: [...document.querySelectorAll("a.subject")].map(a => a.textContent)})`), 2, true, true, p2.Subjects)
	check("Previous to page 1", after("previous to page 1", `document.querySelector("#prev-page").click()`, "#/certificates?limit=2"), 1, false, true, p1.Subjects)
	check("Next again", after("next again", `document.querySelector("#next-page").click()`, hash2), 2, true, true, p2.Subjects)
	b.wantNoProblems(t)
}

// TestConsoleSourceNamesDefaultProfile: certificates from /api/csr's default profile are recorded under the
// endpoint "api" whatever AZSCEP_API_PROFILE names; the list and the certificate page show the profile's name
// ("REST · web"), as the filter and the request form do, not the storage key "api".
func TestConsoleSourceNamesDefaultProfile(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true", "AZSCEP_PROFILE_WEB=validity=30d;eku=serverAuth;dns=*.contoso.example", "AZSCEP_API_PROFILE=web")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-a@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "default.contoso.example"}, "default.contoso.example")
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 1`)
	if got := eval[string](b, `document.querySelector(`+"`"+`#results td[data-label="Source"]`+"`"+`).textContent`); got != "REST · web" {
		t.Errorf("the list's Source is %q, want REST · web", got)
	}
	serial := store.SerialString(c.SerialNumber)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("certificate details", `!!document.querySelector("#download-pem")`)
	got := eval[string](b, `document.querySelector("main").innerText`)
	if !strings.Contains(got, "Requested over REST · web") || strings.Contains(got, "REST · api") {
		t.Errorf("the certificate page does not name the profile: %q", got)
	}
}

// TestConsoleShowsInvisibleCharacters: a device or REST caller chooses its subject's free text (an Intune device
// name becomes a CN), and the policy refuses invisible characters only where they would hide a DNS name, an
// address or a URI, and explicit directional formatting everywhere. A zero-width space still makes two different
// names look the same (and a record written before that refusal may hold a right-to-left override, which made
// "CN=\u202E1000-ecived" display as "CN=device-0001"): the console must show such characters as what they are,
// wherever it shows certificate data (list, details, the revoke confirmation), not let them hide or reorder text
// in front of the admin.
func TestConsoleShowsInvisibleCharacters(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	spoof := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "mallory@azscep.local", "CSR.Request.Db"),
		pkix.Name{CommonName: "device\u200B-0001", Organization: []string{"Contoso\u2060"}})
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 1`)
	// Any bidi control, zero-width or other default-ignorable character left in the text the admin reads.
	const hidden = `/[\p{Cf}\p{Default_Ignorable_Code_Point}]/u`
	if got := eval[string](b, `document.querySelector("a.subject").textContent`); regexpHidden(b, hidden, "a.subject") ||
		!strings.Contains(got, "U+200B") || !strings.Contains(got, "U+2060") {
		t.Errorf("the list shows the subject as %+q, want its invisible characters made visible", got)
	}
	serial := store.SerialString(spoof.SerialNumber)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("certificate details", `!!document.querySelector("#revoke-button")`)
	if regexpHidden(b, hidden, "main") {
		t.Errorf("the certificate page hides characters: %+q", eval[string](b, `document.querySelector("main").innerText`))
	}
	b.do("revoke", chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("confirmation dialog", `document.querySelector("#confirm-revoke").open`)
	if got := eval[string](b, `document.querySelector("#confirm-revoke").innerText`); regexpHidden(b, hidden, "#confirm-revoke") ||
		!strings.Contains(got, "U+200B") {
		t.Errorf("the revoke confirmation shows %+q, want the zero-width space made visible", got)
	}
	b.shotViewport("invisible-characters")
	b.wantNoProblems(t)
}

// regexpHidden reports whether the text of the element sel matches the JavaScript regular expression re.
func regexpHidden(b *browserSession, re, sel string) bool {
	b.t.Helper()
	return eval[bool](b, fmt.Sprintf(`%s.test(document.querySelector(%q).textContent)`, re, sel))
}

// TestConsoleReadOnlyRole: a user signed in with Certificates.Read only sees certificates and their details, the role
// the CA grants is shown, and neither the revoke form nor the sync button is offered (even where the sync is
// enabled); the API refuses the revocation from that token all the same. Signed in again with Certificates.Manage, the
// same page offers revocation.
func TestConsoleReadOnlyRole(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	cert := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "read.contoso.example"})
	serial := store.SerialString(cert.SerialNumber)
	page := svc.base + "/api/console/"

	b.signInReader(page, "auditor@azscep.local")
	b.waitFor("certificate list", `document.querySelectorAll("table.list tbody tr").length > 0`)
	if got := eval[string](b, `document.querySelector("#user-role").textContent`); got != "Certificates.Read (read only)" {
		t.Errorf("role shown %q, want Certificates.Read (read only)", got)
	}
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("details", `!!document.querySelector(".title-row .badge") && document.title.includes("`+serial+`")`)
	if eval[bool](b, `!!document.querySelector("#revoke-button") || !!document.querySelector("form.revoke")`) {
		t.Error("the revoke form is offered to a reader")
	}
	if !eval[bool](b, `!!document.querySelector("#revoke-readonly")`) {
		t.Error("the page does not say why there is no revoke form")
	}
	b.shot("read-only-certificate")
	// The API refuses the reader's revocation whatever the page offers.
	b.do("revoke through the API", chromedp.Evaluate[chromedp.Void](`(() => {
		const tok = JSON.parse(sessionStorage.getItem("azscep.console.session")).token;
		fetch("../certificates/`+serial+`/revoke", {method: "POST", headers: {Authorization: "Bearer " + tok,
			"Content-Type": "application/json"}, body: JSON.stringify({reason: "keyCompromise"})})
			.then(async (r) => { window.__revokeAnswer = r.status + " " + (await r.json()).code; });
	})()`))
	b.waitFor("the API's answer", `typeof window.__revokeAnswer === "string"`)
	status := eval[string](b, `window.__revokeAnswer`)
	if status != "403 manage_role_required" {
		t.Errorf("the reader's revoke was answered %q, want 403 manage_role_required", status)
	}
	if rec, err := svc.store.Get(context.Background(), serial); err != nil || rec.Status != store.StatusIssued {
		t.Fatalf("a reader revoked %s: %+v %v", serial, rec, err)
	}
	// Even with the sync enabled, no sync button.
	b.do("sync enabled", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.fetch = (u, o) => !/revocation-sync$/.test(String(u)) ? window.__fetch(u, o) :
			window.__fetch(u, o).then((r) => r.json()).then((j) => new Response(JSON.stringify(Object.assign(j, {enabled: true})),
				{status: 200, headers: {"Content-Type": "application/json"}}));
		location.hash = "#/operations";
	})()`))
	b.waitFor("operations", `!!document.querySelector("#sync-result")`)
	if eval[bool](b, `!!document.querySelector("#sync-now")`) {
		t.Error("the sync button is offered to a reader")
	}
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))

	// Signed in with both roles (the form's defaults), the same certificate can be revoked.
	b.do("sign out", chromedp.Click(chromedp.ID("signout")))
	b.signIn(page)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("revoke form", `!!document.querySelector("#revoke-button")`)
	if got := eval[string](b, `document.querySelector("#user-role").textContent`); got != "Certificates.Manage" {
		t.Errorf("role shown %q, want Certificates.Manage", got)
	}
	b.wantNoProblems(t)
}

// TestConsoleRequesterUsernameNamesNoUPN: a token without a upn claim is recorded as "oid:<id> username:<name>",
// the name being the token's preferred_username, which its user may change. One that reads "x upn:<someone else's
// UPN>" is shown whole, in the list and on the certificate's page, never as that other UPN.
func TestConsoleRequesterUsernameNamesNoUPN(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "mallory@azscep.local", "CSR.Request.Db"),
		pkix.Name{CommonName: "kiosk-0001"})
	ctx := context.Background()
	rec, err := svc.store.Get(ctx, store.SerialString(c.SerialNumber))
	if err != nil {
		t.Fatal(err)
	}
	rec.Requester = "oid:3f2c1a0e-5b6d-4e7f-8a9b-0c1d2e3f4a5b username:x upn:ceo@azscep.local"
	if err := svc.store.Update(ctx, rec, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 1`)
	if got := eval[string](b, `document.querySelector("td[data-label=Requester]").innerText`); got != "x upn:ceo@azscep.local" {
		t.Errorf("the list shows the requester as %q, want the whole username", got)
	}
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+rec.Serial))
	b.waitFor("details", `!!document.querySelector("#revoke-button")`)
	if got := eval[string](b, `[...document.querySelectorAll(".facts dt")].find((dt) => dt.textContent === "Requester").nextElementSibling.innerText`); !strings.HasPrefix(got, "x upn:ceo@azscep.local\nobject ID 3f2c1a0e") {
		t.Errorf("the certificate's requester reads %q, want the whole username and then the object ID", got)
	}
	b.wantNoProblems(t)
}
