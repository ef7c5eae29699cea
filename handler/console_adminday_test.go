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
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/store"
)

// An administrator's day with the console: what a certificate just issued shows, how a serial reads beside long
// subjects on a laptop's and wider windows, how a revoked certificate reads in the list and on its page, the
// search on a phone, and what a refused request says.

// TestConsoleIssuedShowsWhatWasIssued: after "Request certificate" the result names what the CA put in the
// certificate (its subject, every SAN, the profile and when it expires), as the CA's record does, so the
// administrator checks it before handing it on. It showed only the serial and the profile: the names and the
// expiry took a download and openssl. The certificate alone (PEM) is a download of its own beside the chain.
func TestConsoleIssuedShowsWhatWasIssued(t *testing.T) {
	b, svc, page := signedInConsole(t)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	uri, _ := url.Parse("https://billing.contoso.example/service")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "billing.contoso.example", Organization: []string{"Contoso, Ltd."}, OrganizationalUnit: []string{"Billing"}},
		DNSNames: []string{"billing.contoso.example", "billing-eu.contoso.example"}, EmailAddresses: []string{"billing-ops@contoso.example"},
		URIs: []*url.URL{uri}}, key)
	if err != nil {
		t.Fatal(err)
	}
	b.do("request view", chromedp.Navigate(page+"#/request"))
	b.waitFor("request form", `document.querySelectorAll("#profile option").length > 0`)
	b.do("paste", chromedp.SetValue(chromedp.ID("csr"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))))
	b.do("request", chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("issued", `!!document.querySelector("#request-result #download-chain")`)
	b.shot("request-issued")

	serial := eval[string](b, `document.querySelector("#request-result a[href^='#/certificate/']").textContent`)
	rec, err := svc.store.Get(context.Background(), serial)
	if err != nil {
		t.Fatalf("the record of %q: %v", serial, err)
	}
	if len(rec.SANs) != 4 || !strings.Contains(rec.Subject, "O=Contoso") {
		t.Fatalf("the CA issued %q with %q; the test wants a subject with an O and four SANs", rec.Subject, rec.SANs)
	}
	facts := eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll("#request-result .facts dt")].map((dt) => [dt.textContent, dt.nextElementSibling.innerText]))`)
	if facts["Subject"] != rec.Subject {
		t.Errorf("the result's subject is %q, want the record's %q", facts["Subject"], rec.Subject)
	}
	if got := eval[[]string](b, `[...document.querySelectorAll("#request-result #issued-sans li")].map((li) => li.textContent)`); strings.Join(got, "|") != strings.Join(rec.SANs, "|") {
		t.Errorf("the result's SANs are %q, want the record's %q", got, rec.SANs)
	}
	if !strings.HasPrefix(facts["Profile"], rec.Profile) || rec.Profile == "" {
		t.Errorf("the result's profile is %q, want the record's %q", facts["Profile"], rec.Profile)
	}
	// The expiry is the certificate's own, to the second (the time element's machine-readable value).
	expires := eval[string](b, `(() => { const dt = [...document.querySelectorAll("#request-result .facts dt")].find((d) => d.textContent === "Expires");
		const t = dt && dt.nextElementSibling.querySelector("time"); return t ? t.getAttribute("datetime") : ""; })()`)
	if when, err := time.Parse(time.RFC3339, expires); err != nil || !when.Equal(rec.NotAfter) {
		t.Errorf("the result says the certificate expires %q, want the record's %s", expires, rec.NotAfter.UTC().Format(time.RFC3339))
	}
	if !strings.Contains(facts["Expires"], "days left") {
		t.Errorf("the result's expiry reads %q, want how many days the certificate has", facts["Expires"])
	}
	// The certificate alone, PEM, is the record's certificate.
	leaf, err := custody.ParsePEMCertificates(b.download("#download-cert-pem"))
	if err != nil || len(leaf) != 1 || !bytesEqual(leaf[0].Raw, rec.CertDER) {
		t.Errorf("the certificate's PEM download is not the issued certificate alone (%d certificates, %v)", len(leaf), err)
	}
	b.wantNoProblems(t)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestConsoleListSerialWholeBesideLongSubject: from 1280 px up the list has room for every serial in full, and
// shows it, beside subjects long enough to wrap. The column got a share of the spare room in proportion to its
// content, the long subject took the rest, and the serial lost its last three to five characters behind an
// ellipsis at 1280, 1440 and 1920 px.
func TestConsoleListSerialWholeBesideLongSubject(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	tok := devTokenAs(t, svc.base, "builder-a@azscep.local", "CSR.Request.Db")
	long := "api-gateway-primary.datacenter-frankfurt-west.contoso.example"
	issueViaAPI(t, svc.base, tok, pkix.Name{CommonName: long, OrganizationalUnit: []string{"Platform Engineering"},
		Organization: []string{"Contoso Holding International"}}, long, "b.contoso.example", "c.contoso.example", "d.contoso.example")
	issueViaAPI(t, svc.base, tok, pkix.Name{CommonName: "stolen-laptop.contoso.example"}, "stolen-laptop.contoso.example")
	page := svc.base + "/api/console/"
	b.signIn(page)
	for _, w := range []int64{1280, 1440, 1920} {
		b.viewport(w, 900)
		b.do("list", chromedp.Navigate(page+"#/certificates"))
		b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 2`)
		// Nor does the serial's room come out of the subject's words: a subject wraps between its parts, never
		// inside a word ("stolen-laptop.contoso.exa" over "mple").
		if cut := eval[[]string](b, subjectsCutInWords); len(cut) > 0 {
			t.Errorf("at %d px a subject wraps inside a word, after %q", w, cut)
		}
		for _, s := range eval[[]serialBox](b, measureSerials) {
			if s.Cut || s.Lines != 1 || s.Right > s.CellRight+0.5 {
				t.Errorf("at %d px the serial %s shows %.0f of its %d characters on %d line(s), want all of them on one line within its cell",
					w, s.Text, s.Shown, len(s.Text), s.Lines)
			}
		}
		if eval[bool](b, `(() => { const e = document.documentElement, wrap = document.querySelector("#results .table-wrap");
			return e.scrollWidth > e.clientWidth || wrap.scrollWidth > wrap.clientWidth; })()`) {
			t.Errorf("at %d px the list scrolls sideways: table %.0f px in %.0f px", w, eval[float64](b, `document.querySelector("#results .table-wrap").scrollWidth`),
				eval[float64](b, `document.querySelector("#results .table-wrap").clientWidth`))
		}
		b.shotViewport(fmt.Sprintf("list-long-subject-%d", w))
	}
	b.wantNoProblems(t)
}

// subjectsCutInWords lists, for every subject in the list that wraps between two letters or digits, its text up to
// that line break.
const subjectsCutInWords = `[...document.querySelectorAll("#results a.subject")].flatMap((a) => {
	const chars = [], r = document.createRange(), walk = document.createTreeWalker(a, NodeFilter.SHOW_TEXT), cut = [];
	for (let t = walk.nextNode(); t; t = walk.nextNode()) {
		for (let i = 0; i < t.length; i++) {
			r.setStart(t, i); r.setEnd(t, i + 1);
			const box = r.getClientRects()[0];
			chars.push({c: t.data[i], top: box ? box.top : null});
		}
	}
	let top = null;
	chars.forEach((ch, i) => {
		if (ch.top === null) return;
		if (top !== null && ch.top > top + 2 && /[A-Za-z0-9]/.test(chars[i - 1].c) && /[A-Za-z0-9]/.test(ch.c)) cut.push(chars.slice(0, i).map((x) => x.c).join(""));
		top = ch.top;
	});
	return cut;
})`

// TestConsoleRevokedReadsRevoked: a revoked certificate reads as revoked wherever the administrator meets it. In
// the list its row says why and when under the badge (it looked like any other row but for the badge's colour);
// on its own page a notice above the cards says when, why, by whom and with which comment, the reason in words
// ("Key compromise", not "keyCompromise"), and its expiry no longer counts "364 days left" in green.
func TestConsoleRevokedReadsRevoked(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	tok := devTokenAs(t, svc.base, "builder-a@azscep.local", "CSR.Request.Db")
	issueViaAPI(t, svc.base, tok, pkix.Name{CommonName: "valid-host.contoso.example"}, "valid-host.contoso.example")
	gone := issueViaAPI(t, svc.base, tok, pkix.Name{CommonName: "stolen-laptop.contoso.example"}, "stolen-laptop.contoso.example")
	serial := store.SerialString(gone.SerialNumber)
	const comment = "laptop stolen, ticket INC-0815"
	req, _ := http.NewRequest(http.MethodPost, svc.base+"/api/certificates/"+serial+"/revoke",
		strings.NewReader(`{"reason":"keyCompromise","comment":"`+comment+`"}`))
	req.Header.Set("Authorization", "Bearer "+devTokenAs(t, svc.base, "admin@azscep.local", "Certificates.Manage"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoking: %d", resp.StatusCode)
	}
	rec, err := svc.store.Get(context.Background(), serial)
	if err != nil || rec.RevokedAt.IsZero() {
		t.Fatalf("the revoked record: %+v %v", rec, err)
	}
	page := svc.base + "/api/console/"
	b.signIn(page)

	for _, w := range []int64{390, 1280} {
		b.viewport(w, 900)
		b.do("list", chromedp.Navigate(page+"#/certificates"))
		b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 2`)
		type row struct {
			Status string `json:"status"`
			When   string `json:"when"`
		}
		rows := eval[map[string]row](b, `Object.fromEntries([...document.querySelectorAll("#results tbody tr")].map((tr) => {
			const td = tr.querySelector('td[data-label="Status"]'), t = td.querySelector("time");
			return [tr.querySelector('td[data-label="Serial"]').textContent, {status: td.innerText, when: t ? t.getAttribute("datetime") : ""}];
		}))`)
		got, ok := rows[serial]
		if when, err := time.Parse(time.RFC3339, got.When); !ok || err != nil || when.Sub(rec.RevokedAt).Abs() >= time.Millisecond ||
			!strings.Contains(got.Status, "Key compromise") {
			t.Errorf("at %d px the revoked row's status reads %q (revoked at %q), want the reason in words and the revocation's time %s",
				w, got.Status, got.When, rec.RevokedAt.UTC().Format(time.RFC3339))
		}
		for s, r := range rows {
			if s != serial && (r.When != "" || r.Status != "Issued") {
				t.Errorf("at %d px the valid certificate's status reads %q (%q), want only its badge", w, r.Status, r.When)
			}
		}
		b.shotViewport(fmt.Sprintf("list-revoked-%d", w))
	}

	b.viewport(1280, 900)
	b.do("open the revoked certificate", chromedp.Navigate(page+"#/certificate/"+serial))
	b.waitFor("details", `!!document.querySelector(".facts") && document.title.includes("`+serial+`")`)
	banner := eval[string](b, `(document.querySelector("#revoked-banner")||{}).innerText || ""`)
	for _, want := range []string{"Revoked", "key compromise", comment, "admin@azscep.local"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the revoked certificate's notice lacks %q: %q", want, banner)
		}
	}
	if at := eval[string](b, `(document.querySelector("#revoked-banner time")||{getAttribute: () => ""}).getAttribute("datetime")`); at == "" {
		t.Error("the revoked certificate's notice does not say when it was revoked")
	}
	facts := eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll(".facts dt")].map((dt) => [dt.textContent, dt.nextElementSibling.innerText]))`)
	if facts["Reason"] != "Key compromise" {
		t.Errorf("the certificate's reason reads %q, want %q", facts["Reason"], "Key compromise")
	}
	if strings.Contains(facts["Not after"], "days left") || !strings.Contains(facts["Not after"], "revoked") {
		t.Errorf("the revoked certificate's expiry reads %q, want no days left counted", facts["Not after"])
	}
	b.shot("certificate-revoked")
	b.wantNoProblems(t)
}

// TestConsoleFiltersFoldOnPhone: on a phone the search's filters besides the name fold behind a Filters button, so
// the first certificates show on the first screen: unfolded, the nine fields took all of it and the results began
// below. The button unfolds them (and the focus moves into them); a search with a filter set shows them unfolded,
// the button saying how many are set. On a laptop they are all on the page as before, and there is no button.
func TestConsoleFiltersFoldOnPhone(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	issueNumbered(t, svc.base, "phone-%02d.contoso.example", "phone-%02d@azscep.local", 2)
	page := svc.base + "/api/console/"
	b.signIn(page)

	b.viewport(390, 844)
	b.do("list", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 2`)
	if top := eval[float64](b, `document.querySelector("#results tbody tr").getBoundingClientRect().top`); top > 844-80 {
		t.Errorf("on a phone the first certificate starts %.0f px down, below the first screen (844 px)", top)
	}
	if eval[bool](b, `document.querySelector("#status").getClientRects().length > 0`) {
		t.Error("on a phone the filters are unfolded before any is set or asked for")
	}
	b.shotViewport("phone-filters-folded")
	b.do("unfold", chromedp.Click(chromedp.ID("filters-toggle")))
	b.waitFor("unfolded", `document.querySelector("#status").getClientRects().length > 0 && document.activeElement.id === "status" &&
		document.querySelector("#filters-toggle").getAttribute("aria-expanded") === "true"`)
	b.do("filter", chromedp.SetValue(chromedp.ID("status"), "issued"), chromedp.Click(chromedp.ID("search-button")))
	b.waitFor("filtered", `location.hash.includes("status=issued") && document.querySelectorAll("#results table.list tbody tr").length === 2`)
	if got := eval[string](b, `document.querySelector("#filters-toggle").textContent + " " + document.querySelector("#filters-toggle").getAttribute("aria-expanded") +
		" " + (document.querySelector("#status").getClientRects().length > 0)`); got != "Filters (1 set) true true" {
		t.Errorf("after a search with a status the filters read %q, want them unfolded and the button saying one is set", got)
	}

	b.viewport(1280, 800)
	b.do("list", chromedp.Navigate(page+"#/certificates"))
	b.waitFor("list", `document.querySelectorAll("#results table.list tbody tr").length === 2`)
	if got := eval[string](b, `[document.querySelector("#filters-toggle").getClientRects().length, ...["status", "source", "endpoint", "device", "requester", "since", "until", "limit"]
		.map((id) => document.getElementById(id).getClientRects().length)].join("")`); got != "011111111" {
		t.Errorf("on a laptop the Filters button and the filters show as %s, want no button and every filter", got)
	}
	b.wantNoProblems(t)
}

// TestConsoleRequestRefusalSaysWhatToDo: a CSR the profile refuses is answered with the CA's status and code, its
// detail, and where to fix it. The page showed the detail with the code run on after it ("… not allowed
// subject_alt_name_not_allowed") and nothing on what to change; a name the profile does not allow is fixed by
// choosing another profile or leaving the name out.
func TestConsoleRequestRefusalSaysWhatToDo(t *testing.T) {
	b, _, page := signedInConsole(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "printer.contoso.example"},
		DNSNames: []string{"printer.contoso.example"}, IPAddresses: []net.IP{net.ParseIP("10.20.30.40")}}, key)
	if err != nil {
		t.Fatal(err)
	}
	b.do("request view", chromedp.Navigate(page+"#/request"))
	b.waitFor("request form", `document.querySelectorAll("#profile option").length > 0`)
	b.do("paste", chromedp.SetValue(chromedp.ID("csr"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))),
		chromedp.Click(chromedp.ID("request-button")))
	b.waitFor("refused", `!!document.querySelector("#request-result .notice.error")`)
	got := eval[string](b, `document.querySelector("#request-result .notice").innerText`)
	for _, want := range []string{"The CA answered 400 subject_alt_name_not_allowed: ", "not allowed by profile api", "choose a profile", "leave the name out"} {
		if !strings.Contains(got, want) {
			t.Errorf("the refusal lacks %q: %q", want, got)
		}
	}
	b.shot("request-refused")
	b.wantNoProblems(t)
}
