package revocation_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/crl"
	"github.com/azscep/azscep/internal/ocsp"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
)

func writePEM(t *testing.T, dir, name string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is required for the interoperability test: ", err)
	}
	out, err := exec.CommandContext(t.Context(), path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// After a sync revokes a certificate, the CRL and OCSP — built over revocation.Status and told through
// OnRevoked — publish it (reason cessationOfOperation), and independent clients (openssl) agree. The responses
// for both certificates were cached before the sync, so this also proves the invalidation.
func TestCRLAndOCSPAfterSync(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	recs := f.issue(t, 2)
	target, other := recs[0], recs[1]
	quiet := slog.New(slog.DiscardHandler)
	status := revocation.Status{Store: f.backend}
	pub, err := crl.NewPublisher(f.ca.Cert, f.ca.Key, status, status, crl.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	responder, err := ocsp.NewResponder(f.ca.Cert, f.ca.Key, status, ocsp.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ocsp.Handler(responder))
	defer srv.Close()

	dir := t.TempDir()
	caPath := writePEM(t, dir, "ca.pem", f.ca.Cert.Raw)
	targetPath := writePEM(t, dir, "target.pem", target.CertDER)
	otherPath := writePEM(t, dir, "other.pem", other.CertDER)
	queryOCSP := func(leaf string) string {
		return openssl(t, "ocsp", "-issuer", caPath, "-cert", leaf, "-url", srv.URL+"/api/ocsp", "-CAfile", caPath, "-resp_text")
	}

	before, err := pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if before.Entries != 0 {
		t.Fatalf("CRL before the sync lists %d entries", before.Entries)
	}
	for _, p := range []string{targetPath, otherPath} {
		if out := queryOCSP(p); !strings.Contains(out, filepath.Base(p)+": good") {
			t.Fatalf("OCSP before the sync:\n%s", out)
		}
	}

	rc := f.queue(t, target.Serial)
	s := f.syncer(t, func(c *revocation.SyncConfig) {
		c.OnRevoked = func(serials []string) {
			pub.Invalidate()
			for _, serial := range serials {
				if n, err := store.ParseSerial(serial); err == nil {
					responder.Invalidate(n)
				}
			}
		}
	})
	run := f.run(t, s)
	if run.Revoked != 1 || run.Uploaded != 1 {
		t.Fatalf("run = %+v", run)
	}
	rec := f.record(t, target.Serial)
	if rec.RevocationRef != rc {
		t.Fatalf("record not revoked by the sync: %+v", rec)
	}

	after, err := pub.Current(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.Number.Cmp(before.Number) <= 0 || after.Entries != 1 {
		t.Fatalf("CRL after the sync: number %v (before %v), %d entries", after.Number, before.Number, after.Entries)
	}
	parsed, err := x509.ParseRevocationList(after.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.CheckSignatureFrom(f.ca.Cert); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	wantSerial, _ := store.ParseSerial(target.Serial)
	if len(parsed.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL entries = %d", len(parsed.RevokedCertificateEntries))
	}
	e := parsed.RevokedCertificateEntries[0]
	if e.SerialNumber.Cmp(wantSerial) != 0 || e.ReasonCode != 5 || !e.RevocationTime.Equal(rec.RevokedAt) {
		t.Errorf("CRL entry %x reason %d at %v; want %x reason 5 at %v", e.SerialNumber, e.ReasonCode, e.RevocationTime,
			wantSerial, rec.RevokedAt)
	}
	crlPath := filepath.Join(dir, "ca.crl")
	if err := os.WriteFile(crlPath, after.DER, 0o600); err != nil {
		t.Fatal(err)
	}
	out := openssl(t, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", caPath, "-noout", "-text")
	for _, want := range []string{"verify OK", "Serial Number: " + target.Serial, "Cessation Of Operation"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl crl output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, other.Serial) {
		t.Errorf("the CRL lists the certificate that was not revoked:\n%s", out)
	}

	out = queryOCSP(targetPath)
	for _, want := range []string{"Response verify OK", "target.pem: revoked", "Reason: cessationOfOperation"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl ocsp (revoked) lacks %q:\n%s", want, out)
		}
	}
	out = queryOCSP(otherPath)
	if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, "other.pem: good") {
		t.Errorf("openssl ocsp (good):\n%s", out)
	}
}

// Status answers OCSP from the record: good for issued, revoked with time and reason, unknown for what was never
// delivered (pending, withheld) or never issued here.
func TestStatusCertificateStatus(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	issued := f.issue(t, 2)
	if _, _, err := revocation.Revoke(t.Context(), f.backend, issued[1].Serial, 1, "admin:x", "", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	pending := f.insert(t, store.StatusPending, true, "pending")
	withheld := f.insert(t, store.StatusIssued, true, "withheld")
	withheld.Withheld = true
	if err := f.backend.Update(t.Context(), withheld, store.StatusIssued); err != nil {
		t.Fatal(err)
	}
	revokedRec := f.record(t, issued[1].Serial)
	s := revocation.Status{Store: f.backend}
	for _, tt := range []struct {
		name   string
		serial string
		want   ocsp.Status
	}{
		{"issued", issued[0].Serial, ocsp.Status{Known: true}},
		{"revoked", issued[1].Serial, ocsp.Status{Known: true, Revoked: true, RevokedAt: revokedRec.RevokedAt, Reason: 1}},
		{"pending", pending.Serial, ocsp.Status{}},
		{"withheld", withheld.Serial, ocsp.Status{}},
		{"never issued", "0BADC0FFEE", ocsp.Status{Absent: true}},
	} {
		n, _ := store.ParseSerial(tt.serial)
		got, err := s.CertificateStatus(t.Context(), n)
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	entries, err := s.RevokedEntries(t.Context())
	if err != nil || len(entries) != 1 || entries[0].Reason != 1 || !entries[0].RevokedAt.Equal(revokedRec.RevokedAt) {
		t.Errorf("RevokedEntries = %+v, %v", entries, err)
	}

	// A store failure is an error (tryLater), never "unknown".
	f.faults.FailMethod("Get", nil)
	n, _ := store.ParseSerial(issued[0].Serial)
	if _, err := (revocation.Status{Store: f.faults}).CertificateStatus(t.Context(), n); err == nil {
		t.Error("CertificateStatus hid a store failure")
	}
}

// CRL numbers come from one ETag-protected counter in the store: two publishers (two function instances) never
// reuse a number, and concurrent allocations are all distinct and increasing per caller.
func TestCRLNumberSharedAcrossPublishers(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		status := revocation.Status{Store: f.backend}
		quiet := slog.New(slog.DiscardHandler)
		p1, err := crl.NewPublisher(f.ca.Cert, f.ca.Key, status, status, crl.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		p2, err := crl.NewPublisher(f.ca.Cert, f.ca.Key, status, status, crl.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var last *big.Int
		for i, p := range []*crl.Publisher{p1, p2, p1, p2} {
			p.Invalidate()
			c, err := p.Current(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if last != nil && c.Number.Cmp(last) <= 0 {
				t.Errorf("CRL %d has number %v after %v", i, c.Number, last)
			}
			last = c.Number
		}

		const workers, each = 4, 4
		var mu sync.Mutex
		seen := map[string]bool{}
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				var prev *big.Int
				for range each {
					n, err := status.NextCRLNumber(context.Background())
					if err != nil {
						t.Errorf("NextCRLNumber: %v", err)
						return
					}
					if prev != nil && n.Cmp(prev) <= 0 {
						t.Errorf("number %v after %v from the same caller", n, prev)
					}
					if n.Cmp(last) <= 0 {
						t.Errorf("number %v not above the last CRL's %v", n, last)
					}
					prev = n
					mu.Lock()
					if seen[n.String()] {
						t.Errorf("CRL number %v handed out twice", n)
					}
					seen[n.String()] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != workers*each {
			t.Errorf("%d distinct numbers, want %d", len(seen), workers*each)
		}
	})
}

// CurrentCRLNumber reads the shared counter without moving it: 0 before any CRL, then the last number
// NextCRLNumber handed out (a publisher compares it with its own number after reading the index). An unreadable
// counter is an error, never 0.
func TestCRLNumberCurrent(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		// A clock at the epoch: the counter alone (TestCRLNumberTimeFloor has the clock's floor).
		status := revocation.Status{Store: f.backend, Now: func() time.Time { return time.Unix(0, 0) }}
		wantCurrent := func(want int64) {
			t.Helper()
			if n, err := status.CurrentCRLNumber(t.Context()); err != nil || n.Cmp(big.NewInt(want)) != 0 {
				t.Errorf("CurrentCRLNumber = %v, %v; want %d", n, err, want)
			}
		}
		wantCurrent(0)
		for want := int64(1); want <= 20; want++ { // past 0xf, so the hex encoding is exercised
			n, err := status.NextCRLNumber(t.Context())
			if err != nil || n.Int64() != want {
				t.Fatalf("NextCRLNumber = %v, %v; want %d", n, err, want)
			}
			wantCurrent(want)
		}
		wantCurrent(20) // reading does not allocate
		if n, err := status.NextCRLNumber(t.Context()); err != nil || n.Int64() != 21 {
			t.Errorf("NextCRLNumber after reads = %v, %v; want 21", n, err)
		}

		f.faults.FailMethod(storetest.MethodGetMeta, nil)
		down := revocation.Status{Store: f.faults}
		if n, err := down.CurrentCRLNumber(t.Context()); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("CurrentCRLNumber with the store down = %v, %v; want ErrUnavailable", n, err)
		}
	})
}

// TestCRLNumberTimeFloor: a CRL number is at least the current Unix time, so that tables restored from an older
// backup (whose counter lags the CRLs published since) never number a CRL below one already published; the
// counter still decides when it is ahead of the clock, and within one second, so numbers only increase.
func TestCRLNumberTimeFloor(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	at := time.Unix(1_800_000_000, 0)
	status := revocation.Status{Store: f.backend, Now: func() time.Time { return at }}
	if _, err := f.backend.PutMeta(t.Context(), "crl-number", []byte("2a"), ""); err != nil { // restored: 42
		t.Fatal(err)
	}
	want := []int64{1_800_000_000, 1_800_000_001, 1_800_000_002} // the same second: the counter moves on
	for _, w := range want {
		if n, err := status.NextCRLNumber(t.Context()); err != nil || n.Int64() != w {
			t.Fatalf("NextCRLNumber = %v, %v; want %d", n, err, w)
		}
	}
	at = at.Add(-time.Hour) // a clock behind the counter (another instance's)
	if n, err := status.NextCRLNumber(t.Context()); err != nil || n.Int64() != 1_800_000_003 {
		t.Fatalf("NextCRLNumber with a clock behind = %v, %v; want the counter plus one", n, err)
	}
}

// A corrupt stored counter stops CRL generation rather than restarting the numbering.
func TestCRLNumberCorrupt(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if _, err := f.backend.PutMeta(t.Context(), "crl-number", []byte("not hex"), ""); err != nil {
		t.Fatal(err)
	}
	status := revocation.Status{Store: f.backend}
	if n, err := status.NextCRLNumber(t.Context()); err == nil {
		t.Errorf("NextCRLNumber = %v over a corrupt counter", n)
	}
	if n, err := status.CurrentCRLNumber(t.Context()); err == nil {
		t.Errorf("CurrentCRLNumber = %v over a corrupt counter", n)
	}
}

// CRLDER serves the publisher's current DER (the SCEP GetCRL source).
func TestCRLDER(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	status := revocation.Status{Store: f.backend}
	pub, err := crl.NewPublisher(f.ca.Cert, f.ca.Key, status, status, crl.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	der, err := revocation.CRLDER{Publisher: pub}.CurrentDER(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := pub.Current(t.Context())
	if string(der) != string(cur.DER) {
		t.Error("CurrentDER differs from the publisher's current CRL")
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		t.Error(err)
	}
}

// TestRevokedEntriesCarryNotAfter: the index gives the CRL publisher each certificate's notAfter, expired ones
// included, so that the publisher can keep an entry on one CRL issued after the expiry (RFC 5280 §3.3); entries
// indexed before the index kept notAfter have none, and stay.
func TestRevokedEntriesCarryNotAfter(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		rec := f.issue(t, 1)[0]
		if _, _, err := revocation.Revoke(t.Context(), f.backend, rec.Serial, 1, "admin:alice", "", time.Now()); err != nil {
			t.Fatal(err)
		}
		legacy := store.Revoked{Serial: "5C0123456789ABCDEF0123456789ABCDEF", RevokedAt: time.Now().Add(-time.Hour)}
		if _, err := f.backend.AddRevoked(t.Context(), legacy); err != nil {
			t.Fatal(err)
		}
		entries, err := revocation.Status{Store: f.backend}.RevokedEntries(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]time.Time{}
		for _, e := range entries {
			got[store.SerialString(e.Serial)] = e.NotAfter
		}
		if na, ok := got[rec.Serial]; !ok || !na.Equal(rec.NotAfter) {
			t.Errorf("entry for %s: notAfter %v (listed %v), want %v", rec.Serial, na, ok, rec.NotAfter)
		}
		if na, ok := got[legacy.Serial]; !ok || !na.IsZero() {
			t.Errorf("legacy entry: notAfter %v (listed %v), want listed without one", na, ok)
		}
	})
}
