package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// startRESTProfiles starts a CA whose /api/csr offers the default profile web and the chosen profile server, with
// one certificate issued under each, and returns the console's address.
func startRESTProfiles(t *testing.T) string {
	t.Helper()
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true", "AZSCEP_PROFILE_SERVER=validity=90d;eku=serverAuth;dns=*.contoso.example",
		"AZSCEP_PROFILE_WEB=validity=30d;eku=serverAuth;dns=*.contoso.example", "AZSCEP_API_PROFILE=web", "AZSCEP_API_PROFILES=server")
	issueViaAPI(t, svc.base, devTokenAs(t, svc.base, "builder-a@azscep.local", "CSR.Request.Db"), pkix.Name{CommonName: "default.contoso.example"}, "default.contoso.example")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "chosen.contoso.example"},
		DNSNames: []string{"chosen.contoso.example"}}, key)
	req, _ := http.NewRequest(http.MethodPost, svc.base+"/api/csr?profile=server", bytes.NewReader(der))
	req.Header.Set("Authorization", "Bearer "+devTokenAs(t, svc.base, "builder-b@azscep.local", "CSR.Request.Db"))
	req.Header.Set("Content-Type", "application/pkcs10")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("issuing with profile server: %d", resp.StatusCode)
	}
	return svc.base + "/api/console/"
}

// filterByEndpoint opens the certificate list, filters it by the endpoint choice "REST: <profile>" and returns
// the subjects the filtered search found (ok false when there is no such choice).
//
// Each wait names the view it waits for: Navigate returns once the address changed, before the console drew the
// new view (the filtered list before it is still on screen), or changes nothing when the page is at #/certificates
// already; and the unfiltered list's own search may still be in flight, to be drawn after the address asked for
// the filter. So the filter is chosen only in the unfiltered view that has drawn its answer, and the filtered
// answer is read only from a view drawn after it.
func filterByEndpoint(b *browserSession, console, profile string) (subjects []string, ok bool) {
	b.t.Helper()
	b.do("certificates", chromedp.Navigate(console+"#/certificates"))
	b.waitFor("the unfiltered list", `location.hash === "#/certificates" && (document.querySelector("#endpoint")||{}).value === "" &&
		document.querySelectorAll("#endpoint option").length > 1 && !!document.querySelector("#results table.list, #results .empty")`)
	value := eval[string](b, fmt.Sprintf(`([...document.querySelectorAll("#endpoint option")].find(o => o.textContent.startsWith("REST: %s"))||{}).value || ""`, profile))
	if value == "" {
		b.t.Errorf("no endpoint choice for REST profile %s: %v", profile, eval[[]string](b, `[...document.querySelectorAll("#endpoint option")].map(o => o.textContent)`))
		return nil, false
	}
	eval[bool](b, `(window.__unfiltered = document.querySelector("#results"), true)`)
	b.do("filter "+profile, chromedp.SetValue(chromedp.ID("endpoint"), value), chromedp.Click(chromedp.ID("search-button")))
	b.waitFor("results "+profile, fmt.Sprintf(`location.hash.includes("endpoint=" + encodeURIComponent(%q)) && document.querySelector("#results") !== window.__unfiltered &&
		document.querySelector("#endpoint").value === %[1]q && !!document.querySelector("#results table.list, #results .empty")`, value))
	return eval[[]string](b, `[...document.querySelectorAll("#results a.subject")].map(a => a.textContent)`), true
}

// slowConsole makes every page of b slow the way a slow day does: the unfiltered certificate list answers late
// (once the address asks for a filter, or after 3 s), and the console draws a view a second after the address
// changed (as while the sign-in is being renewed). The page before stays on screen meanwhile, and a late answer
// is drawn into it.
const slowConsole = `(() => {
	const held = [];
	const release = () => held.splice(0).forEach((f) => f());
	const fetch = window.fetch;
	window.fetch = (u, o) => {
		const answer = fetch(u, o);
		if (!/\/certificates\?/.test(String(u)) || /[?&]endpoint=/.test(String(u))) return answer;
		return new Promise((resolve) => {
			held.push(() => resolve(answer));
			setTimeout(release, 3000);
		});
	};
	window.addEventListener("hashchange", (ev) => {
		if (ev.late) return;
		ev.stopImmediatePropagation();
		if (location.hash.includes("endpoint=")) release();
		setTimeout(() => window.dispatchEvent(Object.assign(new HashChangeEvent("hashchange"), { late: true })), 1000);
	}, true);
})();`

// TestConsoleEndpointFilterSlowPage: filterByEndpoint, which TestConsoleEndpointFilterRESTProfiles relies on,
// reads the filtered search's own answer when the page is slow. Its wait was satisfied by the view before the
// search (the unfiltered list, answering late into a page the test had cleared, or drawn after the test cleared
// the view before it), and the test then read the unfiltered list or the new view's "Searching…": it failed
// under load with "REST: server finds []".
func TestConsoleEndpointFilterSlowPage(t *testing.T) {
	b := newBrowser(t)
	console := startRESTProfiles(t)
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: slowConsole}); err != nil {
		t.Fatal(err)
	}
	b.signIn(console)
	for _, c := range []struct{ profile, subject string }{{"web", "CN=default.contoso.example"}, {"server", "CN=chosen.contoso.example"}} {
		if got, ok := filterByEndpoint(b, console, c.profile); ok && (len(got) != 1 || got[0] != c.subject) {
			t.Errorf("REST: %s finds %v, want [%s]", c.profile, got, c.subject)
		}
	}
}

// TestConsoleEndpointChoicesStayInTheirView: the endpoint choices a list view asked for are drawn into that view's
// own select, never into the view that replaced it. The first list's overview answered late, and with an error,
// after the admin had opened a list filtered by endpoint: its empty answer ("Any" only) replaced the filtered
// view's choices, so the page showed "Any" for a filtered list and the next Search dropped the filter.
func TestConsoleEndpointChoicesStayInTheirView(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true", "AZSCEP_PROFILE_WEB=validity=30d;eku=serverAuth;dns=*.contoso.example",
		"AZSCEP_PROFILE_SERVER=validity=90d;eku=serverAuth;dns=*.contoso.example", "AZSCEP_API_PROFILE=web", "AZSCEP_API_PROFILES=server")
	// The page's first overview call waits until the test answers it, with a 503 (its problem read at once, so that
	// the page has handled it when the call that answers returns).
	hold := `(() => {
		const fetch = window.fetch;
		let first = true;
		window.fetch = (u, o) => {
			if (!first || !/\/certificates\/overview$/.test(String(u))) return fetch(u, o);
			first = false;
			return new Promise((resolve) => {
				window.__answerFirstOverview = () => {
					const problem = {title: "Service Unavailable", status: 503, code: "store_unavailable", detail: "Table Storage answered ServerBusy"};
					const r = new Response(JSON.stringify(problem), {status: 503, headers: {"Content-Type": "application/problem+json"}});
					r.json = () => Promise.resolve(problem);
					resolve(r);
				};
			});
		};
	})();`
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: hold}); err != nil {
		t.Fatal(err)
	}
	console := svc.base + "/api/console/"
	b.signIn(console)
	b.waitFor("the first list's overview asked", `typeof window.__answerFirstOverview === "function"`)
	b.do("filtered list", chromedp.Navigate(console+"#/certificates?endpoint=api"))
	b.waitFor("the filtered list's choices", `location.hash === "#/certificates?endpoint=api" && document.querySelector("#endpoint").value === "api" &&
		[...document.querySelectorAll("#endpoint option")].some(o => o.textContent.startsWith("REST: server"))`)
	eval[bool](b, `(window.__answerFirstOverview(), true)`)
	if got := eval[string](b, `document.querySelector("#endpoint").value`); got != "api" {
		t.Errorf("the filtered list's endpoint choice is %q after the first list's overview failed, want api: %v", got,
			eval[[]string](b, `[...document.querySelectorAll("#endpoint option")].map(o => o.textContent)`))
	}
	if p := b.problems(); len(p) > 0 {
		t.Errorf("console errors: %v", p)
	}
}
