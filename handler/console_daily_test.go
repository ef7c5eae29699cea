package main

import (
	"context"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/store"
)

// The console as an administrator uses it every day, on a laptop (1280×800), a desktop (1440×900), the smallest
// window the header is laid out for (1024 px) and a phone (390×844): the header, the list, the revoke dialog.

// longUPN is an administrator's UPN as real tenants spell them: long enough to crowd the header.
// No hyphen in it: nothing but the page's own rules breaks it.
const longUPN = "alexandra.konstantinopoulou.verwaltung@contosoholdinginternational.onmicrosoft.com"

// signInAs signs in through the development issuer as upn, with the form's default roles.
func (b *browserSession) signInAs(page, upn string) {
	b.t.Helper()
	b.do("open console", chromedp.Navigate(page))
	b.waitFor("sign-in page", `!!document.querySelector("#signin")`)
	b.do("start sign-in", chromedp.Click(chromedp.ID("signin")))
	b.waitFor("dev issuer form", `location.pathname === "/api/dev/authorize" && !!document.querySelector("#upn")`)
	b.do("sign in", chromedp.SetValue(chromedp.ID("upn"), upn), chromedp.Click(chromedp.ID("signin")))
	b.waitFor("signed in", `location.pathname === "/api/console/" && !document.querySelector("#user").hidden`)
}

func (b *browserSession) viewport(width, height int64) {
	b.t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: width, Height: height, DeviceScaleFactor: 1}); err != nil {
		b.t.Fatal(err)
	}
	b.waitFor(fmt.Sprintf("a %d px window", width), fmt.Sprintf(`innerWidth === %d`, width))
}

// headerBox is where the header's parts are drawn.
type headerBox struct {
	Height   float64   `json:"height"`
	Tops     []float64 `json:"tops"`     // the nav links', the user name's, the role's and Sign out's
	Bottoms  []float64 `json:"bottoms"`  // the same
	Rights   []float64 `json:"rights"`   // the same
	Widths   []float64 `json:"widths"`   // the same
	Overlaps bool      `json:"overlaps"` // two of them share pixels
	Labels   []string  `json:"labels"`   // the nav links' text
	Wide     bool      `json:"wide"`     // the page scrolls sideways
}

const measureHeader = `(() => {
	const parts = [...document.querySelectorAll("#nav a"), document.querySelector("#user-name"), document.querySelector("#user-role"), document.querySelector("#signout")];
	const rs = parts.map((e) => e.getBoundingClientRect());
	let overlaps = false;
	for (let i = 0; i < rs.length; i++) for (let j = i + 1; j < rs.length; j++) {
		const a = rs[i], c = rs[j];
		if (a.width && c.width && a.left < c.right - 0.5 && c.left < a.right - 0.5 && a.top < c.bottom - 0.5 && c.top < a.bottom - 0.5) overlaps = true;
	}
	return {height: document.querySelector("header.top").getBoundingClientRect().height, tops: rs.map((r) => r.top), bottoms: rs.map((r) => r.bottom),
		rights: rs.map((r) => r.right), widths: rs.map((r) => r.width), overlaps, labels: [...document.querySelectorAll("#nav a")].map((a) => a.textContent),
		wide: document.documentElement.scrollWidth > document.documentElement.clientWidth};
})()`

// contrast is the WCAG contrast ratio of two "rgb(r, g, b)" colours.
func contrast(a, b string) float64 {
	lum := func(s string) float64 {
		var r, g, bl float64
		if _, err := fmt.Sscanf(strings.TrimPrefix(strings.TrimPrefix(s, "rgba("), "rgb("), "%f, %f, %f", &r, &g, &bl); err != nil {
			return math.NaN()
		}
		lin := func(c float64) float64 {
			c /= 255
			if c <= 0.03928 {
				return c / 12.92
			}
			return math.Pow((c+0.055)/1.055, 2.4)
		}
		return 0.2126*lin(r) + 0.7152*lin(g) + 0.0722*lin(bl)
	}
	x, y := lum(a), lum(b)
	if x < y {
		x, y = y, x
	}
	return (x + 0.05) / (y + 0.05)
}

// TestConsoleDailyUse walks the console as an administrator with a long UPN who uses it daily.
func TestConsoleDailyUse(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	var sans []string
	for i := range 30 {
		sans = append(sans, fmt.Sprintf("node-%02d.datacenter-frankfurt-west.contoso.example", i))
	}
	wide := issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-a@azscep.local", "CSR.Request.Db"),
		pkix.Name{CommonName: sans[0], OrganizationalUnit: []string{"Platform-Engineering-Infrastructure-Operations-Frankfurt-West"}}, sans...)
	issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-b@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "today.contoso.example"}, "today.contoso.example")
	page := svc.base + "/api/console/"
	b.signInAs(page, longUPN)
	b.waitFor("role shown", `document.querySelector("#user-role").textContent !== ""`)

	// The header is one row from 1024 px up, with every section, the user, the role and Sign out on it, side by
	// side, and within the window. At 1280 px "Sync & pending" had dropped to a second row under the other tabs.
	for _, w := range []struct{ width, height int64 }{{1024, 768}, {1280, 800}, {1440, 900}} {
		b.viewport(w.width, w.height)
		b.do("list", chromedp.Navigate(page+"#/certificates"))
		b.waitFor("list", `document.querySelectorAll("table.list tbody tr").length === 2`)
		h := eval[headerBox](b, measureHeader)
		if len(h.Labels) != 4 || strings.Join(h.Labels, "|") != "Certificates|Request|CA overview|Sync & pending" {
			t.Errorf("at %d px the sections are %q", w.width, h.Labels)
		}
		for i := range h.Tops {
			if h.Widths[i] < 1 || h.Rights[i] > float64(w.width) {
				t.Errorf("at %d px header part %d is not within the window: width %.0f, right edge %.0f", w.width, i, h.Widths[i], h.Rights[i])
			}
			if h.Tops[i] >= h.Bottoms[0] || h.Bottoms[i] <= h.Tops[0] {
				t.Errorf("at %d px header part %d (top %.0f) is not on the row of the first section (%.0f–%.0f)", w.width, i, h.Tops[i], h.Tops[0], h.Bottoms[0])
			}
		}
		if h.Overlaps || h.Wide || h.Height > 72 {
			t.Errorf("at %d px the header is %.0f px high (want one row, at most 72), parts overlap: %v, page scrolls sideways: %v", w.width, h.Height, h.Overlaps, h.Wide)
		}
		if got := eval[string](b, `document.querySelector("#user-name").title`); !strings.Contains(got, longUPN) {
			t.Errorf("at %d px the user name's hover text is %q, want the full UPN (the name may be cut short)", w.width, got)
		}
		b.shotViewport(fmt.Sprintf("header-%d", w.width))
	}
	// The longest role the header shows (a reader's) fits beside the long UPN on the narrowest one-row window too.
	b.viewport(1024, 768)
	b.do("a reader's role", chromedp.Evaluate[chromedp.Void](`document.querySelector("#user-role").textContent = "Certificates.Read (read only)"`))
	if h := eval[headerBox](b, measureHeader); h.Overlaps || h.Wide || h.Height > 72 || h.Rights[len(h.Rights)-1] > 1024 {
		t.Errorf("at 1024 px with a reader's role the header is %.0f px high, parts overlap: %v, scrolls sideways: %v, ends at %.0f px",
			h.Height, h.Overlaps, h.Wide, h.Rights[len(h.Rights)-1])
	}
	b.shotViewport("header-1024-reader")

	// The list says when each certificate was issued and expires to the minute: the admin tells apart the two
	// certificates a device got today.
	b.viewport(1280, 800)
	b.do("list", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("list", `document.querySelectorAll("table.list tbody tr").length === 2`)
	for _, col := range []string{"Issued", "Expires"} {
		got := eval[[]string](b, fmt.Sprintf(`[...document.querySelectorAll('td[data-label=%q]')].map((td) => td.innerText)`, col))
		for _, s := range got {
			if !strings.Contains(s, ":") || !strings.Contains(s, "GMT") {
				t.Errorf("the list's %s column shows %q, want the date and the time of day", col, s)
			}
		}
	}
	// A certificate with 30 SANs takes a few lines in the list, not a screenful: the first SANs, then how many more
	// (all of them are on its own page).
	rowH := eval[float64](b, `Math.max(...[...document.querySelectorAll("table.list tbody tr")].map((r) => r.getBoundingClientRect().height))`)
	if rowH > 240 {
		t.Errorf("a row of the list is %.0f px high, want the SANs of a certificate with 30 of them summarized (at most 240 px, under a third of the window)", rowH)
	}
	// Beside the long subject a serial is still one line, cut after its first letters rather than wrapped in pieces.
	for _, s := range eval[[]serialBox](b, measureSerials) {
		if s.Lines != 1 || s.Shown < 13 {
			t.Errorf("beside a long subject the serial %s takes %d lines and shows %.0f characters, want one line of at least 13", s.Text, s.Lines, s.Shown)
		}
	}
	if got := eval[string](b, `document.querySelector("table.list tbody").innerText`); !strings.Contains(got, "27 more") {
		t.Errorf("the list does not say how many SANs it leaves out: %q", got)
	}
	if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
		t.Error("a long subject makes the list scroll sideways")
	}
	b.shotViewport("list-long-names")

	// The keyboard focus stands out on the page's white cards (WCAG 2.2: at least 3:1): a pale amber ring is
	// hard to find on a laptop in daylight.
	b.do("focus search", chromedp.Focus(chromedp.ID("q")))
	ring := eval[[]string](b, `(() => { const s = getComputedStyle(document.querySelector("#q")); return [s.outlineStyle, s.outlineColor]; })()`)
	if ring[0] == "none" || contrast(ring[1], "rgb(255, 255, 255)") < 3 {
		t.Errorf("the focused search box's outline is %s %s: contrast %.2f with white, want at least 3", ring[0], ring[1], contrast(ring[1], "rgb(255, 255, 255)"))
	}

	// The revoke dialog repeats what the admin typed, reason and comment, before the irreversible action.
	serial := store.SerialString(wide.SerialNumber)
	b.do("open certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("details", `!!document.querySelector("#revoke-button") && document.title.includes("`+serial+`")`)
	// A REST requester reads as its UPN, with the object ID on a line of its own, not as "oid:… upn:…" wrapped over
	// four lines with the UPN last.
	if got := eval[string](b, `[...document.querySelectorAll(".facts dt")].find((dt) => dt.textContent === "Requester").nextElementSibling.innerText`); !strings.HasPrefix(got, "builder-a@azscep.local\nobject ID ") {
		t.Errorf("the certificate's requester reads %q, want its UPN and then its object ID", got)
	}
	// A comment longer than the 256 bytes the CA keeps (it cuts the rest without a word) is refused before the
	// dialog, with the reason: 200 letters ä are 400 bytes, which the field's maxlength (characters) lets through.
	b.do("a long comment", chromedp.SetValue(chromedp.ID("comment"), strings.Repeat("ä", 200)), chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("the comment refused", `(document.querySelector("#comment-error")||{}).textContent?.includes("400 bytes")`)
	if eval[bool](b, `document.querySelector("#confirm-revoke").open || document.activeElement.id !== "comment"`) {
		t.Error("a comment the CA would cut opened the revoke dialog, or the focus is not back on the comment")
	}
	// The dialog shows the comment as it will be recorded, and that is what is recorded.
	comment := "replaced after the office move, ticket INC-4711"
	b.do("fill revoke form", chromedp.Evaluate[chromedp.Void](`document.querySelector("#comment").value = ""`), chromedp.SetValue(chromedp.ID("reason"), "superseded"),
		chromedp.SendKeys(chromedp.ID("comment"), "  "+comment+"  "), chromedp.Click(chromedp.ID("revoke-button")))
	b.waitFor("confirmation dialog", `document.querySelector("#confirm-revoke").open`)
	if got := eval[string](b, `document.querySelector("#comment-error").textContent`); got != "" {
		t.Errorf("after the comment was shortened the form still says %q", got)
	}
	got := eval[string](b, `document.querySelector("#confirm-revoke").innerText`)
	for _, want := range []string{"Superseded", comment, serial} {
		if !strings.Contains(got, want) {
			t.Errorf("the revoke dialog lacks %q: %q", want, got)
		}
	}
	if eval[bool](b, `(() => { const d = document.querySelector("#confirm-revoke"); return d.scrollWidth > d.clientWidth; })()`) {
		t.Error("the revoke dialog scrolls sideways with a long subject")
	}
	b.shotViewport("revoke-confirm-comment")
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-yes")))
	b.waitFor("revoked", `!!document.querySelector("#revoke-result .notice.ok")`)
	if rec, err := svc.store.Get(context.Background(), serial); err != nil || rec.RevocationRef != comment {
		t.Errorf("the recorded comment is %q (%v), want %q as the dialog showed it", rec.RevocationRef, err, comment)
	}

	// On a phone the header is one row, with a menu button that shows every section, the user and Sign out; a
	// section chosen closes the menu again.
	b.viewport(390, 844)
	b.do("list", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("list", `document.querySelectorAll("table.list tbody tr").length === 2`)
	if h := eval[float64](b, `document.querySelector("header.top").getBoundingClientRect().height`); h > 72 {
		t.Errorf("on a phone the header is %.0f px high before the menu is opened, want one row (at most 72)", h)
	}
	if !eval[bool](b, `(() => { const m = document.querySelector("#menu"); return !!m && m.getClientRects().length > 0 && m.getAttribute("aria-expanded") === "false"; })()`) {
		t.Fatal("on a phone there is no menu button")
	}
	if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
		t.Error("on a phone the list with a long subject scrolls sideways")
	}
	b.shotViewport("phone")
	b.do("open menu", chromedp.Click(chromedp.ID("menu")))
	b.waitFor("menu open", `document.querySelector("#menu").getAttribute("aria-expanded") === "true"`)
	h := eval[headerBox](b, measureHeader)
	for i := range h.Tops {
		if h.Widths[i] < 1 || h.Rights[i] > 390 {
			t.Errorf("with the menu open header part %d is not within the window: width %.0f, right edge %.0f", i, h.Widths[i], h.Rights[i])
		}
	}
	if h.Overlaps || h.Wide {
		t.Errorf("with the menu open parts overlap: %v, page scrolls sideways: %v", h.Overlaps, h.Wide)
	}
	b.shotViewport("phone-menu")
	// Esc closes the menu and leaves the focus on its button, where the keyboard user opens it again.
	b.do("focus a section", chromedp.Focus(chromedp.CSS(`#nav a[data-view="request"]`)), chromedp.KeyEvent("\x1b"))
	b.waitFor("menu closed by Esc", `document.querySelector("#menu").getAttribute("aria-expanded") === "false" && document.activeElement === document.querySelector("#menu")`)
	b.do("open menu again", chromedp.Click(chromedp.ID("menu")))
	b.waitFor("menu open again", `document.querySelector("#nav").getClientRects().length > 0`)
	b.do("choose overview", chromedp.Click(chromedp.CSS(`#nav a[data-view="overview"]`)))
	b.waitFor("overview, menu closed", `location.hash === "#/overview" && document.querySelector("#menu").getAttribute("aria-expanded") === "false" && document.querySelector("#nav").getClientRects().length === 0`)
	if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
		t.Error("on a phone the page scrolls sideways")
	}
	// A refusal names the signed-in user; on a phone the long UPN wraps within the message.
	b.do("answer 403", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.fetch = (u, o) => /certificates\/overview/.test(String(u)) ? Promise.resolve(new Response(
			JSON.stringify({type: "about:blank", title: "Forbidden", status: 403, code: "insufficient_scope", detail: "caller lacks a required role"}),
			{status: 403, headers: {"Content-Type": "application/problem+json"}})) : window.__fetch(u, o);
		location.hash = "#/overview?again";
	})()`))
	b.waitFor("403 message", `[...document.querySelectorAll(".notice h2")].some((h) => h.textContent.startsWith("Missing role"))`)
	if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
		t.Errorf("on a phone the 403 message with a long UPN scrolls sideways: %d > %d px",
			eval[int](b, `document.documentElement.scrollWidth`), eval[int](b, `document.documentElement.clientWidth`))
	}
	b.shotViewport("phone-forbidden")
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.viewport(1280, 800)
	if !eval[bool](b, `document.querySelector("#menu").getClientRects().length === 0 && document.querySelector("#nav").getClientRects().length > 0`) {
		t.Error("on a laptop the menu button shows, or the sections do not")
	}
	b.wantNoProblems(t)
}

// TestConsoleRequestPastedAfterFile: an administrator chooses a CSR file in DER (the text box empties and says the
// file will be sent), then thinks better of it and pastes another request into the box. The CA must sign the
// request on the screen: the file chosen earlier used to win, silently, and the certificate named another host.
func TestConsoleRequestPastedAfterFile(t *testing.T) {
	b, _, page := signedInConsole(t)
	derFile := filepath.Join(t.TempDir(), "old.der")
	if err := os.WriteFile(derFile, csrFor(t, "old.contoso.example"), 0o600); err != nil {
		t.Fatal(err)
	}
	pasted := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor(t, "new.contoso.example")}))
	b.do("request view", chromedp.Navigate(page+"#/request"))
	b.waitFor("request form", `!!document.querySelector("#csr-file") && document.querySelectorAll("#profile option").length > 0`)
	b.do("choose the DER file", chromedp.SetUploadFiles(chromedp.ID("csr-file"), []string{derFile}))
	b.waitFor("the file noted", `document.querySelector("#csr").placeholder.includes("bytes of DER")`)
	// A paste: the text arrives in one input event.
	b.do("paste another request", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const t = document.querySelector("#csr");
		t.value = %q;
		t.dispatchEvent(new InputEvent("input", {bubbles: true, inputType: "insertFromPaste"}));
	})()`, pasted)))
	b.do("request", chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("issued", `!!document.querySelector("#download-chain")`)
	chain, err := custody.ParsePEMCertificates(b.download("#download-chain"))
	if err != nil || len(chain) == 0 {
		t.Fatalf("downloaded chain: %v", err)
	}
	if got := chain[0].Subject.CommonName; got != "new.contoso.example" {
		t.Errorf("the certificate is for %q, want the pasted request's new.contoso.example (not the file chosen before)", got)
	}
	b.wantNoProblems(t)
}
