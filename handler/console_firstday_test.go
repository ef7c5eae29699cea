package main

import (
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

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
	if p := b.problems(); len(p) > 0 {
		t.Errorf("console errors: %s", strings.Join(p, "\n"))
	}
}
