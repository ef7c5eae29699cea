package revocation_test

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/crl"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// TestLostGenerationBumpStillReachesOtherCRLs: a revocation interrupted at either of its generation bumps (a store
// blip after the admin's client hung up, or the instance dying) must still reach the CRL of an instance that follows
// only the generation. Bumped only after the record, a lost bump left index and record revoked with nothing to repair
// it (the hourly sweep completes only records that are not revoked): another instance's CRL omitted the revocation
// until its half-life (12 h) while its OCSP, a point read of the record, said revoked. Now the generation is bumped
// right after the index entry: lost there, the record is not revoked yet and the sweep redoes the revocation; lost
// at the end, the CRLs were already told.
func TestLostGenerationBumpStillReachesOtherCRLs(t *testing.T) {
	for _, cutAt := range []string{"first bump", "final bump"} {
		t.Run(cutAt, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			ctx := context.Background()
			rec := f.issue(t, 1)[0]
			status := revocation.Status{Store: f.backend}

			// Instance B is up and serving a CRL before the revocation.
			pubB, err := crl.NewPublisher(f.ca.Cert, f.ca.Key, status, status, crl.Options{Generation: status, Clock: f.clock})
			if err != nil {
				t.Fatal(err)
			}
			if c, err := pubB.Current(ctx); err != nil || c.Entries != 0 {
				t.Fatalf("B's first CRL: %+v %v", c, err)
			}

			// Instance A: the admin revokes and every meta write from the cut on is lost. Nobody retries: the
			// admin's client is gone (the handler detaches the revocation for that case).
			cut := &cutMeta{Store: f.backend, serial: rec.Serial, afterRecord: cutAt == "final bump"}
			if _, _, err := revocation.Revoke(ctx, cut, rec.Serial, 1, "admin:alice", "", f.clock.Now()); err == nil {
				t.Fatal("Revoke succeeded although a generation bump was lost")
			}
			revokedAt := f.clock.Now()

			// The hourly timer's sweep runs (past the 15-minute grace) on a healthy store.
			for _, step := range []time.Duration{20 * time.Minute, time.Hour, 4 * time.Hour} {
				f.clock.Advance(step)
				if _, err := revocation.CompleteInterrupted(ctx, f.faults, f.clock.Now().Add(-revocation.InterruptedWindow), f.clock.Now()); err != nil {
					t.Fatalf("sweep: %v", err)
				}
				ocspB, err := status.CertificateStatus(ctx, mustSerial(t, rec.Serial))
				if err != nil {
					t.Fatal(err)
				}
				c, err := pubB.Current(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !ocspB.Revoked || c.Entries != 1 {
					t.Errorf("+%v: on instance B OCSP revoked %v, CRL #%v lists %d entries; want both to say revoked",
						f.clock.Now().Sub(revokedAt).Round(time.Minute), ocspB.Revoked, c.Number, c.Entries)
				}
			}
		})
	}
}

func mustSerial(t *testing.T, s string) *big.Int {
	t.Helper()
	n, err := store.ParseSerial(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cutMeta loses every meta write once serial is in the revocation index (afterRecord false: from the first
// generation bump on) or once its record says revoked (afterRecord true: the final bump): the instance died there.
type cutMeta struct {
	store.Store
	serial      string
	afterRecord bool
	indexed     bool
}

func (c *cutMeta) AddRevoked(ctx context.Context, r store.Revoked) (store.Revoked, error) {
	kept, err := c.Store.AddRevoked(ctx, r)
	if err == nil && r.Serial == c.serial {
		c.indexed = true
	}
	return kept, err
}

func (c *cutMeta) PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error) {
	if !c.afterRecord && c.indexed {
		return "", store.ErrUnavailable
	}
	if r, err := c.Store.Get(ctx, c.serial); c.afterRecord && err == nil && r.Status == store.StatusRevoked {
		return "", store.ErrUnavailable
	}
	return c.Store.PutMeta(ctx, name, value, etag)
}

// TestGenerationHistoryNamesRevocationsNotBumps: each revocation bumps the generation twice (after the index entry
// and after the record), and the history still names the last 256 revocations, one entry each: an instance 256
// revocations behind drops single cached OCSP answers, not its whole cache. One revocation further behind, the
// history no longer names them all and says so (complete false): such an instance must drop its whole cache, or it
// would go on answering good for the revocations the history no longer names.
func TestGenerationHistoryNamesRevocationsNotBumps(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	recs := f.issue(t, 260)
	status := revocation.Status{Store: f.backend}
	var before, after uint64
	for i, rec := range recs {
		if i == 3 {
			g, err := status.RevocationGeneration(ctx)
			if err != nil {
				t.Fatal(err)
			}
			before = g
		}
		if i == 4 {
			g, err := status.RevocationGeneration(ctx)
			if err != nil {
				t.Fatal(err)
			}
			after = g
		}
		if _, _, err := revocation.Revoke(ctx, f.backend, rec.Serial, 0, "admin:x", "", f.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	_, serials, complete, err := status.RevokedSince(ctx, after)
	if err != nil {
		t.Fatal(err)
	}
	if !complete || len(serials) != 256 {
		t.Fatalf("since the 4th revocation: complete %v, %d serials; want the 256 revoked after it", complete, len(serials))
	}
	for i, s := range serials {
		if want := mustSerial(t, recs[4+i].Serial); s.Cmp(want) != 0 {
			t.Fatalf("serial %d is %X, want %X", i, s, want)
		}
	}
	if _, serials, complete, err := status.RevokedSince(ctx, before); err != nil || complete {
		t.Fatalf("since the 3rd revocation (257 revocations, history of 256): complete %v, %d serials, %v; want incomplete",
			complete, len(serials), err)
	}
}
