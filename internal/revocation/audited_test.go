package revocation_test

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/store/storetest"
	"github.com/azscep/azscep/internal/testca"
)

// TestAuditedKeyCompromiseOfIntuneRevocation: Intune revoked a certificate (cessationOfOperation) and an admin then
// revokes it for keyCompromise. The published reason stays, but the key is marked: the audit line says both — the
// reason published, the reason asked for, and that this call marked the key — and the mark names the admin. A
// second keyCompromise finds the mark there and says it marked nothing.
func TestAuditedKeyCompromiseOfIntuneRevocation(t *testing.T) {
	backends(t, func(t *testing.T, tables bool) {
		f := newFixture(t, fixtureOptions{tables: tables})
		rec := f.issue(t, 1)[0]
		f.queue(t, rec.Serial)
		f.run(t, f.syncer(t, nil))
		if r := f.record(t, rec.Serial); r.Status != store.StatusRevoked || r.RevocationReason != revocation.IntuneReason {
			t.Fatalf("Intune revocation not applied: %s %d", r.Status, r.RevocationReason)
		}
		ctx := t.Context()
		logs := &testca.LogBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, nil))
		const by = "admin:sec@contoso.com"
		out, _, err := revocation.RevokeAudited(ctx, f.backend, log, rec.Serial, store.KeyCompromise, by, "", "device stolen", f.clock.Now())
		if err != nil || out != revocation.AlreadyRevoked {
			t.Fatalf("RevokeAudited = %v, %v; want AlreadyRevoked", out, err)
		}
		mark, err := f.backend.Compromised(ctx, store.KeyHash(f.leafKey.Public()))
		if err != nil || mark.Serial != rec.Serial || mark.By != by {
			t.Fatalf("key mark = %+v, %v; want one by %s for %s", mark, err, by, rec.Serial)
		}
		lines := logs.Records("audit: certificate revoked")
		if len(lines) != 1 {
			t.Fatalf("audit lines = %v", lines)
		}
		if l := lines[0]; l["serial"] != rec.Serial || l["reason"] != "cessationOfOperation" ||
			l["requested_reason"] != "keyCompromise" || l["key_marked_compromised"] != true || l["already_revoked"] != true ||
			l["by"] != by || l["comment"] != "device stolen" {
			t.Errorf("audit line = %v; want reason cessationOfOperation, requested_reason keyCompromise, key_marked_compromised true", l)
		}

		// Again: the key was marked already, by the first call.
		if _, _, err := revocation.RevokeAudited(ctx, f.backend, log, rec.Serial, store.KeyCompromise, "cli:other", "", "", f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		lines = logs.Records("audit: certificate revoked")
		if len(lines) != 2 || lines[1]["key_marked_compromised"] != false || lines[1]["requested_reason"] != "keyCompromise" {
			t.Errorf("second audit line = %v; want key_marked_compromised false", lines)
		}
		if mark, err := f.backend.Compromised(ctx, mark.PublicKey); err != nil || mark.By != by {
			t.Errorf("key mark after a second keyCompromise = %+v, %v; want the first, by %s", mark, err, by)
		}
	})
}

// TestAuditedRevocationSaysWhatItMarked: a first revocation's audit line names the reason asked for beside the one
// published, and says whether it marked the key: keyCompromise does, another reason does not.
func TestAuditedRevocationSaysWhatItMarked(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	logs := &testca.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	other := f.insert(t, store.StatusIssued, true, "other-key")
	for i, tc := range []struct {
		serial string
		reason int
		marked bool
	}{
		{other.Serial, 4, false},
		{f.issue(t, 1)[0].Serial, store.KeyCompromise, true},
	} {
		out, _, err := revocation.RevokeAudited(t.Context(), f.backend, log, tc.serial, tc.reason, "admin:alice", "", "", f.clock.Now())
		if err != nil || out != revocation.Revoked {
			t.Fatalf("RevokeAudited(%s, %d) = %v, %v", tc.serial, tc.reason, out, err)
		}
		lines := logs.Records("audit: certificate revoked")
		if len(lines) != i+1 {
			t.Fatalf("audit lines = %v", lines)
		}
		name := revocation.ReasonName(tc.reason)
		if l := lines[i]; l["reason"] != name || l["requested_reason"] != name || l["key_marked_compromised"] != tc.marked ||
			l["already_revoked"] != false {
			t.Errorf("audit line for %s = %v; want reason and requested_reason %s, key_marked_compromised %t", name, l, name, tc.marked)
		}
	}
}

// TestAuditedKeyMarkOfFailedRevocation: a keyCompromise marks the key before anything publishes the revocation. When
// the revocation then fails (the index write), nothing is revoked, but the mark stands and refuses renewals: an audit
// line says who marked which key, and that the certificate is not revoked. The retry's audit line then says the key
// was marked already.
func TestAuditedKeyMarkOfFailedRevocation(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	rec := f.issue(t, 1)[0]
	logs := &testca.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx := t.Context()
	boom := errors.New("index unavailable")
	f.faults.FailMethod(storetest.MethodAddRevoked, boom)
	_, got, err := revocation.RevokeAudited(ctx, f.faults, log, rec.Serial, store.KeyCompromise, "cli:bob", "", "lost laptop", f.clock.Now())
	if !errors.Is(err, boom) || got != nil {
		t.Fatalf("RevokeAudited with the index failing = %+v, %v; want %v", got, err, boom)
	}
	if r := f.record(t, rec.Serial); r.Status != store.StatusIssued {
		t.Fatalf("record is %s after a failed revocation", r.Status)
	}
	key := store.KeyHash(f.leafKey.Public())
	if mark, err := f.backend.Compromised(ctx, key); err != nil || mark.By != "cli:bob" {
		t.Fatalf("key mark = %+v, %v; want one by cli:bob", mark, err)
	}
	if lines := logs.Records("audit: certificate revoked"); len(lines) != 0 {
		t.Errorf("audit line for a revocation that failed: %v", lines)
	}
	lines := logs.Records("audit: key marked compromised")
	if len(lines) != 1 {
		t.Fatalf("key-mark audit lines = %v; want one:\n%s", lines, logs.String())
	}
	if l := lines[0]; l["serial"] != rec.Serial || l["public_key"] != key || l["by"] != "cli:bob" ||
		l["requested_reason"] != "keyCompromise" || l["comment"] != "lost laptop" || l["revoked"] != false || l["err"] == nil {
		t.Errorf("key-mark audit line = %v", l)
	}

	f.faults.Clear()
	if out, _, err := revocation.RevokeAudited(ctx, f.faults, log, rec.Serial, store.KeyCompromise, "cli:bob", "", "", f.clock.Now()); err != nil || out != revocation.Revoked {
		t.Fatalf("retry = %v, %v", out, err)
	}
	revoked := logs.Records("audit: certificate revoked")
	if len(revoked) != 1 || revoked[0]["key_marked_compromised"] != false || revoked[0]["reason"] != "keyCompromise" {
		t.Errorf("retry's audit line = %v; want keyCompromise, key_marked_compromised false (the failed call marked it)", revoked)
	}
	if n := len(logs.Records("audit: key marked compromised")); n != 1 {
		t.Errorf("%d key-mark audit lines after the retry, want 1", n)
	}
}

// TestAuditedKeyCompromiseOfRevokedCertificateWhoseLastWritesFail: an admin's keyCompromise of a certificate Intune
// revoked marks the key, then the index re-write or the generation bump fails. The certificate is revoked all the
// same (the record says so, and the error tells the admin to retry), so the audit line is the revocation's, saying
// the key was marked: not a "key marked compromised" line that says it is not revoked.
func TestAuditedKeyCompromiseOfRevokedCertificateWhoseLastWritesFail(t *testing.T) {
	for _, failing := range []string{storetest.MethodAddRevoked, storetest.MethodPutMeta} {
		t.Run(failing, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{})
			rec := f.issue(t, 1)[0]
			f.queue(t, rec.Serial)
			f.run(t, f.syncer(t, nil))
			if r := f.record(t, rec.Serial); r.Status != store.StatusRevoked {
				t.Fatalf("Intune revocation not applied: %s", r.Status)
			}
			logs := &testca.LogBuffer{}
			boom := errors.New("store unavailable")
			f.faults.FailMethod(failing, boom)
			out, got, err := revocation.RevokeAudited(t.Context(), f.faults, slog.New(slog.NewJSONHandler(logs, nil)),
				rec.Serial, store.KeyCompromise, "admin:a", "", "", f.clock.Now())
			if !errors.Is(err, boom) || out != revocation.AlreadyRevoked || got == nil || got.Status != store.StatusRevoked {
				t.Fatalf("RevokeAudited = %v, %+v, %v; want AlreadyRevoked, the revoked record and the error", out, got, err)
			}
			if l := logs.Records("audit: key marked compromised"); len(l) != 0 {
				t.Errorf("audit lines saying the certificate is not revoked: %v", l)
			}
			lines := logs.Records("audit: certificate revoked")
			if len(lines) != 1 || lines[0]["already_revoked"] != true || lines[0]["key_marked_compromised"] != true ||
				lines[0]["requested_reason"] != "keyCompromise" {
				t.Errorf("audit lines = %v; want one, already revoked, the key marked", lines)
			}
		})
	}
}
