package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ocsp"

	"github.com/azscep/azscep/internal/console"
	"github.com/azscep/azscep/internal/store"
)

// The console as an administrator uses it on the first day (keyboard only, a screen reader, a phone) and on a bad
// day (a slow or failing CA): each test here walks one such path in the real browser.

// TestConsoleSkipLinkKeepsPage: "Skip to content" is the first stop of the Tab key on every page. Its #main target
// is also a change of the URL's hash, which the console routes by: following it must move focus past the header
// and leave the page as it is, not replace the certificate the administrator was reading with the list.
func TestConsoleSkipLinkKeepsPage(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "skip.contoso.example"})
	serial := store.SerialString(c.SerialNumber)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("details", `!!document.querySelector("#revoke-button") && document.title.includes("`+serial+`")`)
	// The skip link is the first element in the tab order; Enter follows it.
	if got := eval[string](b, `[...document.querySelectorAll("a[href], button, input, select, textarea")].find(e => e.tabIndex >= 0).className`); got != "skip" {
		t.Fatalf("the first stop of the Tab key is %q, want the skip link", got)
	}
	b.do("follow the skip link", chromedp.Evaluate[chromedp.Void](`document.querySelector(".skip").focus()`), chromedp.KeyEvent("\r"))
	b.waitFor("focus in the content", `document.querySelector("main").contains(document.activeElement)`)
	want := "#/certificate/" + serial
	if got := eval[string](b, `location.hash`); got != want {
		t.Errorf("after the skip link the URL's hash is %q, want %q", got, want)
	}
	if got := eval[string](b, `(document.querySelector("main h1")||{}).textContent || ""`); !strings.Contains(got, "skip.contoso.example") {
		t.Errorf("after the skip link the page shows %q, want the certificate", got)
	}
	b.wantNoProblems(t)
}

// TestConsoleSlowAnswerKeepsNewerPage: on a slow day the administrator opens a certificate, gives up waiting and
// goes to the CA overview. When the certificate's answer arrives at last, the overview they chose stays: a view
// must not draw itself over the page that replaced it while it waited for the CA.
func TestConsoleSlowAnswerKeepsNewerPage(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "slow.contoso.example"})
	serial := store.SerialString(c.SerialNumber)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 1`)
	// The certificate's answer is held until the test lets it through; window.__read says the page has read it.
	b.do("slow certificate", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.fetch = (u, o) => {
			if (!/certificates\/`+serial+`$/.test(String(u))) return window.__fetch(u, o);
			window.__asked = true;
			return window.__fetch(u, o).then((r) => new Promise((ok) => { window.__release = () => {
				const read = r.json.bind(r);
				r.json = () => read().then((v) => { window.__read = true; return v; });
				ok(r);
			}; }));
		};
		location.hash = "#/certificate/`+serial+`";
	})()`))
	b.waitFor("the certificate asked for", `window.__asked === true && typeof window.__release === "function"`)
	b.do("move on", chromedp.Evaluate[chromedp.Void](`location.hash = "#/overview"`))
	b.waitFor("the overview", `[...document.querySelectorAll("main h2")].some(h => h.textContent === "CRL") && document.querySelector("#user-role").textContent !== ""`)
	b.do("the slow answer arrives", chromedp.Evaluate[chromedp.Void](`window.__release()`))
	b.waitFor("the answer read", `window.__read === true`)
	if got := eval[string](b, `location.hash + " " + document.querySelector("main h1").textContent`); got != "#/overview CA overview" {
		t.Errorf("after the certificate's late answer the page is %q, want the overview the administrator moved to", got)
	}
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// TestConsoleKeyboardSearchKeepsFocus: a search and a change of page draw the list anew. An administrator on the
// keyboard who presses Enter in the search box, or on "Next page", keeps the focus where they were; the rebuilt
// page must not drop it to the document, where the next Tab starts again at the top of the page.
func TestConsoleKeyboardSearchKeepsFocus(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	issueNumbered(t, svc.base, "keys-%d.contoso.example", "keys-%d@azscep.local", 3)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 3`)
	// A new visit puts the focus on the view's heading, as every view does.
	if got := eval[string](b, `document.activeElement.tagName + ":" + document.activeElement.textContent.slice(0, 40)`); got != "H1:Certificates" {
		t.Errorf("on arriving at the certificate list the focus is on %q, want its heading", got)
	}

	b.do("search with Enter", chromedp.SendKeys(chromedp.ID("q"), "keys-1\n"))
	b.waitFor("the result", `location.hash === "#/certificates?q=keys-1" && document.querySelectorAll("#results table.list tbody tr").length === 1`)
	if got := eval[string](b, `document.activeElement.tagName + "#" + document.activeElement.id`); got != "INPUT#q" {
		t.Errorf("after Enter in the search box the focus is on %s, want the search box", got)
	}

	b.do("two per page", chromedp.Evaluate[chromedp.Void](`location.hash = "#/certificates?limit=2"`))
	b.waitFor("page 1", `location.hash === "#/certificates?limit=2" && (document.querySelector("#results caption")||{}).textContent?.startsWith("Page 1")`)
	b.do("next page with Enter", chromedp.Evaluate[chromedp.Void](`document.querySelector("#next-page").focus()`), chromedp.KeyEvent("\r"))
	b.waitFor("page 2", `(document.querySelector("#results caption")||{}).textContent?.startsWith("Page 2")`)
	if got := eval[string](b, `document.activeElement.id`); got != "next-page" && got != "prev-page" {
		t.Errorf("after Enter on Next page the focus is on %q, want the pager", got)
	}
	if !eval[bool](b, `!document.activeElement.disabled`) {
		t.Error("the focus is on a disabled button")
	}
	b.wantNoProblems(t)
}

// TestConsoleTimesNameTheirZone: the console writes times in the browser's time zone. An administrator comparing
// them with a log (in UTC), or reading a screenshot a colleague in another zone sent, must see which zone a time is
// in; the UTC time on hover is out of reach on a touch screen and of the keyboard.
func TestConsoleTimesNameTheirZone(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "zone.contoso.example"})
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+store.SerialString(c.SerialNumber)))
	b.waitFor("details", `!!document.querySelector("#download-pem")`)
	// Each time of day shown, with the zone the browser names for that instant (the tests' browser runs in
	// Europe/Berlin: GMT+1 in winter, GMT+2 in summer).
	type shown struct {
		Text string `json:"text"`
		Zone string `json:"zone"`
	}
	times := eval[[]shown](b, `[...document.querySelectorAll("main time.when")].filter(e => /\d:\d\d/.test(e.textContent)).map(e => ({text: e.textContent,
		zone: new Intl.DateTimeFormat(undefined, {timeZoneName: "short"}).formatToParts(new Date(e.dateTime)).find(p => p.type === "timeZoneName").value}))`)
	if len(times) < 3 {
		t.Fatalf("the certificate page shows %d times of day, want at least not before, not after and the request: %v", len(times), times)
	}
	// The longer text still fits its box: the date and the time of day wrap apart in a narrow column.
	if over := eval[[]string](b, `[...document.querySelectorAll("main time.when")].filter(e => e.getBoundingClientRect().right >
		e.parentElement.closest("dd, td, li, p").getBoundingClientRect().right + 1).map(e => e.textContent)`); len(over) > 0 {
		t.Errorf("times stick out of their boxes: %q", over)
	}
	for _, tm := range times {
		if !strings.HasSuffix(tm.Text, " "+tm.Zone) {
			t.Errorf("the time %q does not name its zone %q", tm.Text, tm.Zone)
		}
	}
}

// TestConsoleRevokeOnceWhileAnswered: while the CA has not answered a revocation yet (a slow day), the page says it
// is revoking and offers no second revocation: an administrator who thinks the first click was lost, and clicks
// Revoke again with another reason, sends no second request.
func TestConsoleRevokeOnceWhileAnswered(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	c := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "once.contoso.example"})
	serial := store.SerialString(c.SerialNumber)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("details", `!!document.querySelector("#revoke-button") && document.title.includes("`+serial+`")`)
	// Each revocation request is counted and held until the test lets it through.
	b.do("slow revocation", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.__revokes = 0;
		window.__held = [];
		window.fetch = (u, o) => {
			if (!/\/revoke$/.test(String(u))) return window.__fetch(u, o);
			window.__revokes++;
			return new Promise((ok) => window.__held.push(() => ok(window.__fetch(u, o))));
		};
	})()`))
	b.do("revoke", chromedp.SetValue(chromedp.ID("reason"), "superseded"), chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("confirmation dialog", `document.querySelector("#confirm-revoke").open`)
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitFor("revoking", `window.__revokes === 1 && (document.querySelector("#revoke-result")||{}).textContent?.includes("Revoking")`)
	if !eval[bool](b, `document.querySelector("#revoke-button").disabled`) {
		t.Error("the Revoke button is enabled while the revocation is on its way")
	}
	// Whatever the button shows, a second revocation is not sent: the form submitted again (Enter in the comment
	// field) and confirmed once more.
	b.do("revoke again", chromedp.Evaluate[chromedp.Void](`(() => {
		const r = document.querySelector("#reason");
		r.disabled = false;
		r.value = "keyCompromise";
		document.querySelector("form.revoke").requestSubmit();
		const yes = document.querySelector("#confirm-revoke[open] #confirm-yes");
		if (yes) yes.click();
	})()`))
	b.do("the CA answers", chromedp.Evaluate[chromedp.Void](`window.__held.forEach((f) => f())`))
	b.waitFor("revoked", `!!document.querySelector("#revoke-result .notice.ok")`)
	if n := eval[int](b, `window.__revokes`); n != 1 {
		t.Errorf("%d revocation requests were sent, want 1", n)
	}
	if rec, err := svc.store.Get(context.Background(), serial); err != nil || rec.Status != store.StatusRevoked || rec.RevocationReason != ocsp.Superseded {
		t.Errorf("the record: %+v %v, want revoked as superseded", rec, err)
	}
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// TestConsoleCrumbReturnsToSearch: an administrator searches, opens one of the results and follows "← Certificates"
// to open the next: the link returns to the search they came from (its URL, so its filters and page), not to an
// empty form.
func TestConsoleCrumbReturnsToSearch(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	for _, name := range []string{"crumb-a.contoso.example", "crumb-b.contoso.example", "other.contoso.example"} {
		issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-"+name+"@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: name}, name)
	}
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 3`)
	b.do("search", chromedp.SendKeys(chromedp.ID("q"), "crumb\n"))
	b.waitFor("the results", `document.querySelectorAll("#results table.list tbody tr").length === 2`)
	search := eval[string](b, `location.hash`)
	b.do("open the first", chromedp.Click(chromedp.CSS("a.subject")))
	b.waitFor("details", `!!document.querySelector("#download-pem")`)
	b.do("back to the list", chromedp.Click(chromedp.CSS(".crumbs a")))
	b.waitFor("the list", `!!document.querySelector("#results table.list, #results .empty")`)
	if got := eval[string](b, `location.hash + " " + document.querySelector("#q").value`); got != search+" crumb" {
		t.Errorf("the crumb leads to %q, want the search %q", got, search+" crumb")
	}
	if n := eval[int](b, `document.querySelectorAll("#results table.list tbody tr").length`); n != 2 {
		t.Errorf("the list shows %d certificates, want the search's 2", n)
	}
}

// TestConsoleRequestOnceWhileAnswered: a CSR's request is signed once however often "Request certificate" is clicked
// while the CA has not answered yet: a double-click or an impatient second click on a slow day issued two
// certificates for one request.
func TestConsoleRequestOnceWhileAnswered(t *testing.T) {
	b, _, page := signedInConsole(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "twice.contoso.example"}}, key)
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	b.do("request view", chromedp.Navigate(page+"#/request"))
	b.waitFor("request form", `!!document.querySelector("#csr") && document.querySelectorAll("#profile option").length > 0`)
	// Each request is counted and held until the test lets it through.
	b.do("slow CA", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.__requests = 0;
		window.__held = [];
		window.fetch = (u, o) => {
			if (!/\/csr(\?|$)/.test(String(u))) return window.__fetch(u, o);
			window.__requests++;
			return new Promise((ok) => window.__held.push(() => ok(window.__fetch(u, o))));
		};
	})()`))
	b.do("paste and request", chromedp.SetValue(chromedp.ID("csr"), csrPEM), chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("requesting", `window.__requests === 1 && (document.querySelector("#request-result")||{}).textContent?.includes("Requesting")`)
	if !eval[bool](b, `document.querySelector("#request-button").disabled`) {
		t.Error("the request button is enabled while the request is on its way")
	}
	// A second submission however it comes (a click on the button, Enter in a field).
	b.do("request again", chromedp.Evaluate[chromedp.Void](`document.querySelector("#request-form").requestSubmit()`))
	b.do("the CA answers", chromedp.Evaluate[chromedp.Void](`window.__held.forEach((f) => f())`))
	b.waitFor("issued", `!!document.querySelector("#download-chain")`)
	if n := eval[int](b, `window.__requests`); n != 1 {
		t.Errorf("%d requests were sent, want 1", n)
	}
	if eval[bool](b, `document.querySelector("#request-button").disabled`) {
		t.Error("the request button stays disabled after the answer")
	}
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// TestConsoleSearchAnnouncesCount: a screen reader announces what changes in a live region. The search's answer is
// announced as its count ("Page 1: 3 certificates"), not as the whole table read out row by row, which a live
// region around the results made it do for up to 100 rows after every search.
func TestConsoleSearchAnnouncesCount(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	issueNumbered(t, svc.base, "said-%d.contoso.example", "said-%d@azscep.local", 3)
	page := svc.base + "/api/console/"
	b.signIn(page)
	b.waitFor("certificate list", `document.querySelectorAll("#results table.list tbody tr").length === 3`)
	// The live regions: aria-live, and the roles that imply it.
	const live = `[...document.querySelectorAll('[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], [role="log"]')]`
	if eval[bool](b, live+`.some((r) => r.querySelector("table"))`) {
		t.Error("a live region holds the results table: a screen reader reads every row out")
	}
	if !eval[bool](b, live+`.some((r) => r.textContent.trim() === "Page 1: 3 certificates")`) {
		t.Errorf("no live region says the count; the live regions say %q", eval[[]string](b, live+`.map((r) => r.textContent)`))
	}
	b.do("search for nothing", chromedp.SendKeys(chromedp.ID("q"), "nothing-like-this\n"))
	b.waitFor("no results", `!!document.querySelector("#results .empty")`)
	if !eval[bool](b, live+`.some((r) => r.textContent.trim() === "No certificates match")`) {
		t.Errorf("an empty search is not announced; the live regions say %q", eval[[]string](b, live+`.map((r) => r.textContent)`))
	}
}

// TestConsoleRunsReadableOnTablet: between a phone's width (where table rows become cards) and a desktop's, the
// list of sync runs has more columns than the card has room for. A run's errors, the column an administrator opens
// the page for on a bad day, must still be on screen in a readable width, not scrolled out of the card and wrapped
// a few letters to a line.
func TestConsoleRunsReadableOnTablet(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	if err := svc.store.RecordRun(context.Background(), store.SyncRun{ID: "run-1", Started: time.Now().Add(-65 * time.Minute),
		Finished: time.Now().Add(-64 * time.Minute), Trigger: "timer", Downloaded: 3, Revoked: 2, NotFound: 1, Uploaded: 3,
		Errors: []string{"CertificateNotFoundError for serial 0BADC0DE"}}); err != nil {
		t.Fatal(err)
	}
	page := svc.base + "/api/console/"
	b.signIn(page)
	for _, width := range []int64{800, 1024} {
		if _, err := chromedp.Call(b.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: width, Height: 900, DeviceScaleFactor: 1}); err != nil {
			t.Fatal(err)
		}
		b.do("operations", chromedp.Navigate(page+"#/operations"))
		b.waitFor("the runs", `!!document.querySelector("#sync-result") && [...document.querySelectorAll("td")].some(td => td.textContent.includes("0BADC0DE"))`)
		type box struct {
			Left   float64 `json:"left"`
			Right  float64 `json:"right"`
			Width  float64 `json:"width"`
			Inside float64 `json:"inside"`
		}
		got := eval[box](b, `(() => {
			const li = [...document.querySelectorAll("td li")].find(e => e.textContent.includes("0BADC0DE"));
			const r = li.getBoundingClientRect(), card = li.closest(".card").getBoundingClientRect();
			return {left: r.left, right: r.right, width: r.width, inside: card.right};
		})()`)
		if got.Right > got.Inside || got.Width < 160 {
			t.Errorf("at %d px the run's errors are %.0f px wide and end at %.0f px, want at least 160 px within the card (which ends at %.0f px)",
				width, got.Width, got.Right, got.Inside)
		}
		b.shotViewport(fmt.Sprintf("runs-%d", width))
	}
}

// TestConsoleShowsPassedOver: the certificates the Entra sweeps passed over wait for an operator (a later run asks
// again, but one whose account or device is gone is revoked by hand), so Sync & pending lists them with a link to
// each, says when none is waiting, and when the list cannot be read says so in its own section while the runs and
// pending records above it stay on the page.
func TestConsoleShowsPassedOver(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	ctx := context.Background()
	if err := svc.store.RecordRun(ctx, store.SyncRun{ID: "run-1", Started: time.Now().Add(-65 * time.Minute),
		Finished: time.Now().Add(-64 * time.Minute), Trigger: "timer", Downloaded: 1}); err != nil {
		t.Fatal(err)
	}
	page := svc.base + "/api/console/"
	b.signIn(page)
	const section = `document.querySelector("#passed-over-section")`
	b.do("operations", chromedp.Navigate(page+"#/operations"))
	b.waitFor("the empty list", section+` && !!`+section+`.querySelector(".empty")`)
	if got := eval[string](b, section+`.querySelector(".empty").textContent`); !strings.Contains(got, "No certificate is waiting") {
		t.Errorf("the empty passed-over list reads %q", got)
	}
	b.wantNoProblems(t)

	// The list as revocation's sweeps write it (revocation.passedOverList): one record a verifying pass passed over.
	const serial = "0A1B2C3D4E5F60718293"
	since := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	next := since.Add(28 * time.Hour)
	doc := fmt.Sprintf(`{"records":[{"serial":%q,"scan":"pass","since":%q,"failed":2,"next":%q}],"adopted":true}`,
		serial, since.Format(time.RFC3339), next.Format(time.RFC3339))
	etag, err := svc.store.PutMeta(ctx, "entra-passed-over", []byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	b.do("reload", chromedp.Reload())
	b.waitFor("the passed-over row", `!!document.querySelector("#passed-over tbody tr")`)
	type row struct {
		Cells   []string `json:"cells"`
		Href    string   `json:"href"`
		Caption string   `json:"caption"`
		Times   []string `json:"times"`
	}
	got := eval[row](b, `(() => {
		const t = document.querySelector("#passed-over"), tr = t.querySelector("tbody tr");
		return {cells: [...tr.cells].map((c) => c.textContent.trim()), href: tr.querySelector("a").getAttribute("href"),
			caption: t.caption.textContent, times: [...tr.querySelectorAll("time")].map((e) => e.getAttribute("datetime"))};
	})()`)
	if len(got.Cells) != 5 || got.Cells[0] != serial || got.Cells[1] != "verifying pass" || got.Cells[3] != "2" {
		t.Errorf("the passed-over row reads %q, want the serial, \"verifying pass\" and 2 failed re-asks", got.Cells)
	}
	if got.Href != "#/certificate/"+serial {
		t.Errorf("the serial links to %q", got.Href)
	}
	if !strings.HasPrefix(got.Caption, "1 certificate ") {
		t.Errorf("the caption reads %q, want the count", got.Caption)
	}
	if want := []string{since.Format("2006-01-02T15:04:05.000Z"), next.Format("2006-01-02T15:04:05.000Z")}; strings.Join(got.Times, " ") != strings.Join(want, " ") {
		t.Errorf("the row's times are %q, want since and next %q", got.Times, want)
	}
	b.wantNoProblems(t)
	b.shot("passed-over")
	b.do("follow the serial", chromedp.Evaluate[chromedp.Void](`document.querySelector("#passed-over tbody a").click()`))
	b.waitFor("the certificate page", `location.hash === "#/certificate/`+serial+`"`)

	// A list that does not decode is an error answer for that request alone.
	if _, err := svc.store.PutMeta(ctx, "entra-passed-over", []byte("not a list"), etag); err != nil {
		t.Fatal(err)
	}
	b.do("operations again", chromedp.Navigate(page+"#/operations"))
	b.waitFor("the section's error", section+` && !!`+section+`.querySelector(".notice.error")`)
	if !eval[bool](b, `[...document.querySelectorAll("main td li, main td")].some((td) => td.textContent === "timer") && !!document.querySelector("#sync-result")`) {
		t.Errorf("with the passed-over list unreadable the sync runs are gone: %q", eval[string](b, `document.querySelector("main").textContent`))
	}
	if n := eval[int](b, `document.querySelectorAll("main .notice.error").length`); n != 1 {
		t.Errorf("%d error notices on the page, want the passed-over section's alone", n)
	}
	b.shot("passed-over-error")
}

// TestConsoleEntraRenewalUnreachable: a signed-in admin's token is due for renewal while Entra cannot be reached (the
// network is down, or login.microsoftonline.com is). That is not a signed-out admin: the page says the sign-in could
// not be renewed and offers to try again, instead of the sign-in page, whose button leads to the same unreachable
// Entra. Once Entra answers again, Try again carries on signed in. MSAL's sign-in state is stubbed, as in
// TestConsoleEntraRenewsWithoutIframe.
func TestConsoleEntraRenewalUnreachable(t *testing.T) {
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
				p.acquireTokenSilent = async () => {
					if (window.__entraBack) return { accessToken: "eyJ.e30.sig" };
					throw Object.assign(new Error("network_error: Network request failed"), { errorCode: "network_error" });
				};
				m.__stubbed = true;
			}
			return m;
		} });
	})();`
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: stub}); err != nil {
		t.Fatal(err)
	}
	b.do("open console", chromedp.Navigate(srv.URL+console.Prefix+"#/overview"))
	b.waitFor("a view", `!!document.querySelector("main h1")`)
	if eval[bool](b, `!!document.querySelector("#signin")`) {
		t.Fatalf("with Entra unreachable the page asks for a sign-in: %q", eval[string](b, `document.querySelector("main").innerText`))
	}
	got := eval[string](b, `document.querySelector("main").innerText`)
	if !strings.Contains(got, "could not be renewed") || !strings.Contains(got, "network_error") {
		t.Errorf("the page says %q, want that the sign-in could not be renewed, and why", got)
	}
	b.shot("entra-unreachable")
	b.do("Entra answers again", chromedp.Evaluate[chromedp.Void](`window.__entraBack = true`))
	b.do("try again", chromedp.Click(chromedp.CSS("main .notice button")))
	b.waitFor("signed in", `!document.querySelector("#nav").hidden && location.hash === "#/overview"`)
}

// TestConsoleSignedOutHeaderEmpty: before the first sign-in (and after signing out) the header offers no sections and
// no "Sign out": the page marks them hidden, and the header's own layout (display: flex) must not show them anyway,
// a Sign out button for an admin who is not signed in and section links that only lead back to the sign-in page.
func TestConsoleSignedOutHeaderEmpty(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	page := svc.base + "/api/console/"
	shown := `["#nav", "#user", "#signout"].filter((s) => document.querySelector(s).getClientRects().length > 0)`
	b.do("open console", chromedp.Navigate(page))
	b.waitFor("sign-in page", `!!document.querySelector("#signin")`)
	if got := eval[[]string](b, shown); len(got) > 0 {
		t.Errorf("signed out, the header shows %v", got)
	}
	b.do("start sign-in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("dev issuer form", `location.pathname === "/api/dev/authorize" && !!document.querySelector("#upn")`)
	b.do("sign in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("signed in", `location.pathname === "/api/console/" && !document.querySelector("#user").hidden`)
	if got := eval[[]string](b, shown); len(got) != 3 {
		t.Errorf("signed in, the header shows only %v", got)
	}
	b.do("sign out", chromedp.Click(chromedp.ID("signout")))
	b.waitFor("sign-in page again", `!!document.querySelector("#signin")`)
	if got := eval[[]string](b, shown); len(got) > 0 {
		t.Errorf("signed out again, the header shows %v", got)
	}
}
