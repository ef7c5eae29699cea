package issuance

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/azscep/azscep/internal/policy"
	"github.com/azscep/azscep/internal/store"
)

// TestNeverIssuesTheCAName: no door issues a leaf whose subject is the CA's name, as RFC 5280 §7.1 compares names
// (case and runs of white space aside): relying parties that build chains by name would take it for the CA. The
// refusal is a policy one (bad_subject), before anything is recorded or signed; a name merely like the CA's passes.
func TestNeverIssuesTheCAName(t *testing.T) {
	for _, c := range []struct {
		cn   string
		want bool // refused
	}{
		{"Test CA", true},
		{"test  ca", true},
		{"TEST CA", true},
		{"Test CA 2", false},
	} {
		t.Run(c.cn, func(t *testing.T) {
			f := newFixture(t, nil)
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.cn}}, leafKey)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := policy.ParseCSR(der)
			if err != nil {
				t.Fatal(err)
			}
			checked, err := policy.Check(csr, f.prof)
			if err != nil {
				t.Fatalf("policy.Check(CN=%q): %v", c.cn, err)
			}
			req := &Request{Checked: checked, Profile: f.prof, Source: store.SourceSCEP, Endpoint: "static",
				Requester: "test", TxID: "tx", Key: "tx"}
			_, err = f.iss.Issue(context.Background(), req)
			r, isRejection := policy.AsRejection(err)
			if c.want != (isRejection && r.Code == policy.CodeSubject) || (!c.want && err != nil) {
				t.Fatalf("Issue(CN=%q) = %v; refused as the CA's name: want %t", c.cn, err, c.want)
			}
			if page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10}); c.want && (len(page) != 0 || f.signer.signs.Load() != 0) {
				t.Fatalf("refusal left %d records and %d signatures, want none", len(page), f.signer.signs.Load())
			}
		})
	}
}
