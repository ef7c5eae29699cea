package issuance

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"sync/atomic"
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
			req := f.requestFor(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.cn}}, nil, "tx")
			_, err := f.iss.Issue(context.Background(), req)
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

// switchMarks is a KeyMarks whose one compromised key a test sets when it likes.
type switchMarks struct{ hash atomic.Pointer[string] }

func (m *switchMarks) Compromised(_ context.Context, h string) (store.CompromisedKey, bool, error) {
	if p := m.hash.Load(); p != nil && *p == h {
		return store.CompromisedKey{PublicKey: h, Serial: "0B"}, true, nil
	}
	return store.CompromisedKey{}, false, nil
}

// TestReplayOfAMarkedKeyRefused: a replay looked up on its own (ReplayRequest, which the Intune endpoints ask before
// validating) does not hand back a certificate whose key was marked compromised since it was issued, as Issue
// refuses such a key before it looks for a replay.
func TestReplayOfAMarkedKeyRefused(t *testing.T) {
	marks := &switchMarks{}
	iss, _, _, _ := auditedIssuer(t, "Replay Marks CA", nil, Config{CompromisedKeys: marks})
	req := deviceRequest(t, leafKey, "kiosk-9.corp.example")
	req.Key = "tx-marked"
	if _, err := iss.Issue(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if res, err := iss.ReplayRequest(context.Background(), req); err != nil || res == nil {
		t.Fatalf("replay before the mark = %v, %v; want the certificate", res, err)
	}
	h := store.KeyHash(req.Checked.PublicKey)
	marks.hash.Store(&h)
	res, err := iss.ReplayRequest(context.Background(), req)
	if r, ok := policy.AsRejection(err); !ok || r.Code != policy.CodeKeyCompromised || res != nil {
		t.Fatalf("replay after the mark = %v, %v; want a %s rejection", res, err, policy.CodeKeyCompromised)
	}
}
