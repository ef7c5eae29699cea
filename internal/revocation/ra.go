package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/store"
)

// Sources of the certificates the CA issues to itself (store.Record.Source).
const (
	SourceOCSP = "ocsp" // delegated OCSP responder certificates
	SourceRA   = "ra"   // SCEP RA certificates
)

// RAProfile is the profile (and endpoint) name on RA certificate records.
const RAProfile = "scep-ra"

// RABy is the RevokedBy of RA certificates revoked by rotation.
const RABy = "azscep:ra-rotation"

var _ custody.Recorder = (*ResponderRecords)(nil)

// RARecords records SCEP RA certificates: pending before the CA key signs, issued after.
func RARecords(st store.Store) *ResponderRecords {
	return &ResponderRecords{Store: st, Source: SourceRA, Profile: RAProfile}
}

// RecordExisting inserts an issued record for an RA certificate signed before RA certificates were recorded (or
// by a bootstrap without a store), so it can be listed and revoked like every other. An existing record is left
// alone. It costs one point read when the record exists.
func RecordExisting(ctx context.Context, st store.Store, cert *x509.Certificate, now time.Time) error {
	serial := store.SerialString(cert.SerialNumber)
	if _, err := st.Get(ctx, serial); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reading the RA certificate's record: %w", err)
	}
	sha1Hex, sha256Hex := thumbprints(cert.Raw)
	rec := &store.Record{Serial: serial, Status: store.StatusIssued, Issuer: cert.Issuer.String(),
		Subject: cert.Subject.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, SHA1: sha1Hex, SHA256: sha256Hex,
		Source: SourceRA, Endpoint: RAProfile, Profile: RAProfile, Requester: "azscep", CertDER: cert.Raw,
		Note: "recorded at start-up: signed before RA certificates were recorded", Created: now, Updated: now}
	if err := st.Insert(ctx, rec); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("recording the RA certificate: %w", err)
	}
	return nil
}

// RARevoker revokes superseded RA certificates and reads their status for custody.RAKeeper.
type RARevoker struct {
	Store store.Store
	// OnRevoked tells this instance's CRL and OCSP caches (other instances follow the revocation generation).
	OnRevoked func(serials []string)
	Now       func() time.Time
}

// Revoke revokes an RA certificate by serial (idempotent).
func (r RARevoker) Revoke(ctx context.Context, serial, reason string) error {
	code, err := ReasonCode(reason)
	if err != nil {
		return err
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	outcome, rec, err := Revoke(ctx, r.Store, serial, code, RABy, "", now())
	if NewlyRevoked(outcome, rec) && r.OnRevoked != nil {
		r.OnRevoked([]string{rec.Serial})
	}
	return err
}

// Revoked reports whether serial's record says revoked (an unknown serial is not revoked).
func (r RARevoker) Revoked(ctx context.Context, serial string) (bool, error) {
	rec, err := r.Store.Get(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return rec.Status == store.StatusRevoked, nil
}
