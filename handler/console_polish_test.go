package main

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/custody"
)

// The console's finish, measured in the real browser: what the request form does after a certificate is issued,
// how a serial reads in the list, and where a reader's role badge sits in the header, at a phone's, the narrowest
// one-row header's, a laptop's and a desktop's width.

// TestConsoleRequestClearedAfterIssue: an administrator requests a certificate, downloads it and clicks "Request
// certificate" again, thinking of the next one. The CSR just signed must not be signed again: the form is emptied
// once the certificate is issued (a pasted request and a DER file alike), a second click asks for the next CSR and
// leaves the issued certificate, and its downloads, on the page.
func TestConsoleRequestClearedAfterIssue(t *testing.T) {
	b, _, page := signedInConsole(t)
	derFile := filepath.Join(t.TempDir(), "first.der")
	if err := os.WriteFile(derFile, csrFor(t, "first.contoso.example"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.do("request view", chromedp.Navigate(page+"#/request"))
	b.waitFor("request form", `!!document.querySelector("#csr-file") && document.querySelectorAll("#profile option").length > 0`)
	// Every request to /api/csr is counted.
	b.do("count requests", chromedp.Evaluate[chromedp.Void](`(() => {
		window.__fetch = window.__fetch || window.fetch;
		window.__requests = 0;
		window.fetch = (u, o) => { if (/\/csr(\?|$)/.test(String(u))) window.__requests++; return window.__fetch(u, o); };
	})()`))

	type form struct {
		Text        string `json:"text"`
		Files       int    `json:"files"`
		Placeholder string `json:"placeholder"`
	}
	const readForm = `({text: document.querySelector("#csr").value, files: document.querySelector("#csr-file").files.length,
		placeholder: document.querySelector("#csr").placeholder})`
	requestAgain := func(step string, want int) {
		t.Helper()
		b.do(step, chromedp.Click(chromedp.ID("request-button")))
		// Either the form asks for the next CSR, or the request went out again and its answer is on the page.
		b.waitFor(step+" answered", fmt.Sprintf(`(document.querySelector("#request-form-error")||{}).textContent?.includes("Paste a CSR or choose a file first") ||
			(window.__requests > %d && !!document.querySelector("#request-result .notice"))`, want))
		if n := eval[int](b, `window.__requests`); n != want {
			t.Errorf("%s: %d requests were sent, want %d (the CSR just signed was sent again)", step, n, want)
		}
		if !eval[bool](b, `!!document.querySelector("#request-result #download-chain")`) {
			t.Errorf("%s: the issued certificate and its downloads are gone from the page", step)
		}
	}

	// 1. A DER file.
	b.do("choose the DER file", chromedp.SetUploadFiles(chromedp.ID("csr-file"), []string{derFile}))
	b.waitFor("the file noted", `document.querySelector("#csr").placeholder.includes("bytes of DER")`)
	b.do("request", chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("issued", `!!document.querySelector("#download-chain")`)
	if f := eval[form](b, readForm); f.Text != "" || f.Files != 0 || strings.Contains(f.Placeholder, "DER") {
		t.Errorf("after the file's certificate was issued the form still holds it: %+v", f)
	}
	// The result says what was issued, and that the form is ready for the next request.
	got := eval[string](b, `document.querySelector("#request-result").innerText`)
	for _, want := range []string{"Certificate issued", "Serial", "Profile", "cleared"} {
		if !strings.Contains(got, want) {
			t.Errorf("the result lacks %q: %q", want, got)
		}
	}
	serial := eval[string](b, `document.querySelector("#request-result a[href^='#/certificate/']").textContent`)
	if serial == "" || !strings.Contains(got, serial) {
		t.Errorf("the result does not show the serial: %q", got)
	}
	requestAgain("request the file again", 1)

	// 2. A pasted request.
	pasted := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrFor(t, "second.contoso.example")}))
	b.do("paste", chromedp.SetValue(chromedp.ID("csr"), pasted))
	b.do("request the pasted CSR", chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("second issued", `window.__requests === 2 && !!document.querySelector("#download-chain") && document.querySelector("#request-result a[href^='#/certificate/']").textContent !== `+fmt.Sprintf("%q", serial))
	if f := eval[form](b, readForm); f.Text != "" {
		t.Errorf("after the pasted request's certificate was issued the form still holds it: %+v", f)
	}
	chain, err := custody.ParsePEMCertificates(b.download("#download-chain"))
	if err != nil || len(chain) == 0 || chain[0].Subject.CommonName != "second.contoso.example" {
		t.Fatalf("the second download: %v", err)
	}
	b.shot("request-cleared")
	requestAgain("request the pasted CSR again", 2)
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))
	b.wantNoProblems(t)
}

// serialBox is where a serial of the list is drawn and what it holds.
type serialBox struct {
	Text      string  `json:"text"`
	Title     string  `json:"title"`
	Lines     int     `json:"lines"`     // lines of text it takes
	Right     float64 `json:"right"`     // its right edge
	CellRight float64 `json:"cellRight"` // its cell's right edge (its content box)
	Cut       bool    `json:"cut"`       // drawn shorter than its text (an ellipsis)
	Shown     float64 `json:"shown"`     // how many of its characters are drawn
	Mono      bool    `json:"mono"`
}

const measureSerials = `[...document.querySelectorAll('#results td[data-label="Serial"]')].map((td) => {
	const c = td.firstElementChild, s = getComputedStyle(c), r = c.getBoundingClientRect(), tr = td.getBoundingClientRect();
	return {text: c.textContent, title: c.title, lines: Math.round(r.height / parseFloat(s.lineHeight)), right: r.right,
		cellRight: tr.right - parseFloat(getComputedStyle(td).paddingRight), cut: c.scrollWidth > c.clientWidth + 0.5,
		shown: c.textContent.length * Math.min(1, c.clientWidth / c.scrollWidth), mono: /mono/i.test(s.fontFamily)};
})`

// TestConsoleListSerialOneLine: a serial in the certificate list reads as one number, whole, on one line, in a
// monospace font, in a phone's card and from 1280 px (a laptop's, a desktop's and a wide screen's width). The column
// wrapped it in the middle ("5CC6E488E509B07E8" over "B5FBD963A7E9239FC", in three pieces beside a long subject),
// which read as two or three numbers; and it was cut with an ellipsis at 1280 and 1440 px. The whole serial is
// still there to hover over and to select and copy. (Between the two, TestConsoleListSerialWholeOnTablets.)
func TestConsoleListSerialOneLine(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	issueNumbered(t, svc.base, "serial-%02d.contoso.example", "serial-%02d@azscep.local", 3)
	page := svc.base + "/api/console/"
	b.signIn(page)
	for _, w := range []struct{ width, height int64 }{{390, 844}, {1280, 800}, {1440, 900}, {1920, 1080}} {
		b.viewport(w.width, w.height)
		b.do("list", chromedp.Navigate(page+"#/certificates"))
		b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 3`)
		for _, s := range eval[[]serialBox](b, measureSerials) {
			if len(s.Text) < 16 || s.Title != s.Text {
				t.Errorf("at %d px a serial reads %q with the hover text %q, want the whole serial in both", w.width, s.Text, s.Title)
			}
			if s.Lines != 1 || !s.Mono {
				t.Errorf("at %d px the serial %s takes %d lines (monospace: %v), want one line in a monospace font", w.width, s.Text, s.Lines, s.Mono)
			}
			if s.Right > s.CellRight+0.5 {
				t.Errorf("at %d px the serial %s ends at %.0f px, past its cell (%.0f px)", w.width, s.Text, s.Right, s.CellRight)
			}
			if s.Cut {
				t.Errorf("at %d px the serial %s shows %.0f of its characters, want all of them", w.width, s.Text, s.Shown)
			}
		}
		if eval[bool](b, `document.documentElement.scrollWidth > document.documentElement.clientWidth`) {
			t.Errorf("at %d px the list scrolls sideways", w.width)
		}
		b.shotViewport(fmt.Sprintf("list-serials-%d", w.width))
	}
	// A double-click on a serial selects all of it, ready to copy.
	b.viewport(1280, 800)
	b.do("list", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 3`)
	want := eval[string](b, `document.querySelector('#results td[data-label="Serial"] > *').textContent`)
	b.do("double-click the serial", chromedp.DoubleClick(chromedp.CSS(`#results td[data-label="Serial"] > *`)))
	if got := strings.TrimSpace(eval[string](b, `getSelection().toString()`)); got != want {
		t.Errorf("a double-click on the serial selects %q, want the whole serial %q", got, want)
	}
	b.wantNoProblems(t)
}

// TestConsoleHeaderReaderBadge: a reader's role badge ("Certificates.Read (read only)", the longest the header shows)
// sits under the user's name, right-aligned with it and within the user's part of the header, beside a long UPN,
// at 1024, 1280 and 1440 px and on a phone with the menu open. At 1024 px the name's column was cut to the name's
// share of the row and the wider badge stuck out of it 13 px to the left, almost onto "Sync & pending".
func TestConsoleHeaderReaderBadge(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	page := svc.base + "/api/console/"
	b.signInReader(page, longUPN)

	type box struct{ Left, Right, Top, Bottom float64 }
	type parts struct {
		Header, Nav, User, Ident, Name, Role, SignOut box
		RoleCut                                       bool // the badge's text is cut
		Wide                                          bool
	}
	const measure = `(() => {
		const b = (s) => { const r = document.querySelector(s).getBoundingClientRect(); return {Left: r.left, Right: r.right, Top: r.top, Bottom: r.bottom}; };
		const h = document.querySelector("header.top"), hs = getComputedStyle(h), hr = h.getBoundingClientRect();
		const lastNav = [...document.querySelectorAll("#nav a")].pop().getBoundingClientRect();
		const role = document.querySelector("#user-role");
		return {Header: {Left: hr.left + parseFloat(hs.paddingLeft), Right: hr.right - parseFloat(hs.paddingRight), Top: hr.top, Bottom: hr.bottom},
			Nav: {Left: 0, Right: lastNav.right, Top: lastNav.top, Bottom: lastNav.bottom},
			User: b("#user"), Ident: b("#user .ident"), Name: b("#user-name"), Role: b("#user-role"), SignOut: b("#signout"),
			RoleCut: role.scrollWidth > role.clientWidth + 0.5, Wide: document.documentElement.scrollWidth > document.documentElement.clientWidth};
	})()`
	within := func(in, out box) bool {
		return in.Left >= out.Left-0.5 && in.Right <= out.Right+0.5 && in.Top >= out.Top-0.5 && in.Bottom <= out.Bottom+0.5
	}
	check := func(width int64, phone bool) {
		t.Helper()
		p := eval[parts](b, measure)
		if !within(p.Role, p.Ident) || !within(p.Name, p.Ident) || !within(p.Ident, p.User) || !within(p.SignOut, p.User) {
			t.Errorf("at %d px a part of the signed-in user sticks out of its box: user %+v, name column %+v, name %+v, role %+v, Sign out %+v",
				width, p.User, p.Ident, p.Name, p.Role, p.SignOut)
		}
		if !within(p.User, p.Header) || p.RoleCut || p.Wide {
			t.Errorf("at %d px the user's part %+v is not within the header's content box %+v, or the role is cut (%v), or the page scrolls sideways (%v)",
				width, p.User, p.Header, p.RoleCut, p.Wide)
		}
		if !phone {
			if p.Role.Left < p.Nav.Right+8 {
				t.Errorf("at %d px the role badge starts %.0f px after the last section (at %.0f px), want a gap of at least 8 px", width, p.Role.Left-p.Nav.Right, p.Nav.Right)
			}
			if d := p.Name.Right - p.Role.Right; d > 0.5 || d < -0.5 {
				t.Errorf("at %d px the name ends at %.0f px and the role badge under it at %.0f px, want them right-aligned", width, p.Name.Right, p.Role.Right)
			}
		}
	}
	for _, w := range []struct{ width, height int64 }{{1024, 768}, {1280, 800}, {1440, 900}} {
		b.viewport(w.width, w.height)
		b.waitFor("one-row header", `document.querySelector("#menu").getClientRects().length === 0`)
		check(w.width, false)
		b.shotViewport(fmt.Sprintf("header-reader-%d", w.width))
	}
	b.viewport(390, 844)
	b.do("open menu", chromedp.Click(chromedp.ID("menu")))
	b.waitFor("menu open", `document.querySelector("#menu").getAttribute("aria-expanded") === "true" && document.querySelector("#user").getClientRects().length > 0`)
	check(390, true)
	b.shotViewport("header-reader-phone-menu")
	b.wantNoProblems(t)
}
