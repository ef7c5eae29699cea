package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/azscep/azscep/internal/custody"
)

// An administrator's day with the console: what a certificate just issued shows.

// TestConsoleIssuedShowsWhatWasIssued: after "Request certificate" the result names what the CA put in the
// certificate (its subject, every SAN, the profile and when it expires), as the CA's record does, so the
// administrator checks it before handing it on. It showed only the serial and the profile: the names and the
// expiry took a download and openssl. The certificate alone (PEM) is a download of its own beside the chain.
func TestConsoleIssuedShowsWhatWasIssued(t *testing.T) {
	b := newBrowser(t)
	svc := startLocal(t, "AZSCEP_DEV_ISSUER=true")
	page := svc.base + "/api/console/"
	b.signIn(page)

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
