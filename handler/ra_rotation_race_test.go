package main

import (
	"context"
	"io"
	"testing"

	"github.com/azscep/azscep/internal/custody"
)

// TestRARotatedOnAnotherInstanceOpensAtOnce: an operator rotates the RA (`ca rotate-ra`) and instance A picks it
// up; a client that fetched GetCACert from A encrypts to the new RA and the load balancer sends its PKIOperation
// to instance B, which has not re-read the RA yet. B re-reads it on the spot (an envelope no RA of its opens) and
// answers, signed by the new RA, instead of badMessageCheck until its next periodic re-read.
func TestRARotatedOnAnotherInstanceOpensAtOnce(t *testing.T) {
	env := localEnv(t)
	a, b := startInstance(t, env), startInstance(t, env)
	ctx := context.Background()
	old := a.raOf(t)
	keys, err := custody.LoadLocal(a.d.cfg.LocalKeyDir, a.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := rotateRA(ctx, a.d.store, custody.LocalRA{Dir: a.d.cfg.LocalKeyDir}, keys, false, a.clock.Now(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := a.d.ra.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	next := a.raOf(t)
	if next.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("A did not pick up the new RA")
	}
	if b.raOf(t).SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Fatal("B already had the new RA: the test needs a stale instance")
	}
	b.enrollTo(t, next, "routed-to-b").mustSucceed(t, next)
}
