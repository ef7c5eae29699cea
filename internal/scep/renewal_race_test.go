package scep_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/testca"
)

// raceHook runs hook once, right before the next write of one kind: a renewal claiming its pending record
// (InsertBound), after the renewal's check passed, or the issued write (Update to issued), after the renewal's
// authorization was read again and the CA signed. Another instance's revocation (instance A) lands there, in the
// middle of the renewal (instance B).
type raceHook struct {
	store.Store
	mu     sync.Mutex
	hook   func()
	issued bool // fire at the issued write instead of the claim
}

func (h *raceHook) fire(issued bool) {
	h.mu.Lock()
	var f func()
	if h.issued == issued {
		f, h.hook = h.hook, nil
	}
	h.mu.Unlock()
	if f != nil {
		f()
	}
}

func (h *raceHook) InsertBound(ctx context.Context, key string, prev *store.Binding, r *store.Record) (store.Binding, error) {
	h.fire(false)
	return h.Store.InsertBound(ctx, key, prev, r)
}

func (h *raceHook) Update(ctx context.Context, r *store.Record, from store.Status) error {
	if r.Status == store.StatusIssued && from == store.StatusPending {
		h.fire(true)
	}
	return h.Store.Update(ctx, r, from)
}

// TestRenewalRacingARevocationDownTheChain: X → Y → Z. A renewal from X is checked while the chain is live, and
// another instance revokes Y (one hop) or Z (two hops), finding the links already in place and writing nothing.
//   - At the claim, before the renewal's authorization is read again: the renewal is refused.
//   - At the issued write, after that read and the signature: the renewal stands (it was authorized first), but
//     X's link, written after it, must not hide the revoked one.
//
// X is cut off afterwards in every case.
func TestRenewalRacingARevocationDownTheChain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		depth  int  // the revoked successor: 1 = Y, 2 = Z
		issued bool // the revocation lands at the issued write, not at the claim
	}{{"one hop, at the claim", 1, false}, {"two hops, at the claim", 2, false},
		{"one hop, at the issued write", 1, true}, {"two hops, at the issued write", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			hs := &raceHook{issued: tc.issued}
			e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store { hs.Store = s; return hs }})
			x := enrollNamed(t, e, epStatic, 0, named)
			inRenewalWindow(e)
			y := wantSuccess(t, renewWith(t, e, epStatic, x, named, 7))
			holderY := enrolled{client: testca.NewClient(t, testca.RSAKey(t, 7), named.Subject, e.ca.Recipient()), cert: y}
			z := wantSuccess(t, renewWith(t, e, epStatic, holderY, named, 8))
			victim := y
			if tc.depth == 2 {
				victim = z
			}
			hs.mu.Lock()
			hs.hook = func() { adminRevoke(t, e, victim, 0) }
			hs.mu.Unlock()
			rep := renewWith(t, e, epStatic, x, named, 9)
			if e.record(t, victim).Status != store.StatusRevoked {
				t.Fatal("setup: the successor was not revoked during the renewal")
			}
			if tc.issued {
				wantSuccess(t, rep)
			} else {
				wantFailure(t, rep, testca.FailBadRequest)
			}
			if rep := renewWith(t, e, epStatic, x, named, 10); rep.Status == testca.StatusSuccess {
				t.Errorf("X renewed again after %s was revoked (X's link: %s)", hexSerial(victim), e.record(t, x.cert).RenewedTo)
			}
		})
	}
}

// TestRenewalSignerRevokedMeanwhile: a RenewalReq signed by X is checked while X is live; before its pending
// record is written, an admin revokes X itself (keyCompromise: the device was stolen). The signer is read again
// once the pending record exists and before the CA signs, so no certificate is signed on a revoked certificate's
// authority: the renewal fails with badRequest, its record is abandoned with the reason, and nothing new renews.
func TestRenewalSignerRevokedMeanwhile(t *testing.T) {
	hs := &raceHook{}
	e := newEnv(t, envOptions{wrap: func(s store.Store) store.Store { hs.Store = s; return hs }})
	x := enrollNamed(t, e, epStatic, 0, named)
	inRenewalWindow(e)
	before := len(e.records(t))
	hs.mu.Lock()
	hs.hook = func() { adminRevoke(t, e, x.cert, store.KeyCompromise) }
	hs.mu.Unlock()

	rep := renewWith(t, e, epStatic, x, named, 7)
	if e.record(t, x.cert).Status != store.StatusRevoked {
		t.Fatal("setup: X was not revoked during the renewal")
	}
	wantFailure(t, rep, testca.FailBadRequest)
	recs := e.records(t)
	if len(recs) != before+1 {
		t.Fatalf("%d records after the refused renewal, want %d (X's and the abandoned attempt's)", len(recs), before+1)
	}
	for _, r := range recs {
		if r.Serial == store.SerialString(x.cert.SerialNumber) {
			continue
		}
		if r.Status != store.StatusAbandoned || len(r.CertDER) != 0 || !strings.Contains(r.Note, "revoked") {
			t.Errorf("the renewal's record: status %s, %d bytes of certificate, note %q; want abandoned unsigned, "+
				"saying why", r.Status, len(r.CertDER), r.Note)
		}
	}
}
