package issuance

import (
	"context"
	"testing"

	"github.com/azscep/azscep/internal/store"
)

// TestNeverIssuesWithoutUsages: a request with no key usage, or no extended key usage, is refused before anything
// is recorded or signed. A certificate without the keyUsage or extendedKeyUsage extension is read by relying
// parties as allowed every usage, so an empty set handed over by a door (a renewal whose old certificate shared no
// EKU with the profile, an ECDSA key under a key-transport-only profile) must never become one.
func TestNeverIssuesWithoutUsages(t *testing.T) {
	for name, strip := range map[string]func(*Request){
		"no key usage":          func(r *Request) { r.Checked.KeyUsage = 0 },
		"no extended key usage": func(r *Request) { r.Checked.ExtKeyUsage = nil },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			req := f.request(t, nil, "kiosk", "tx-"+name)
			strip(req)
			res, err := f.iss.Issue(context.Background(), req)
			if err == nil {
				t.Fatalf("issued a certificate with key usage %b and EKU %v", res.Cert.KeyUsage, res.Cert.ExtKeyUsage)
			}
			if page, _, _ := f.st.Search(context.Background(), store.Query{Limit: 10}); len(page) != 0 || f.signer.signs.Load() != 0 {
				t.Fatalf("refusal left %d records and %d signatures, want none", len(page), f.signer.signs.Load())
			}
		})
	}
}
