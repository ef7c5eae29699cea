package revocation

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/azscep/azscep/internal/crl"
	"github.com/azscep/azscep/internal/ocsp"
	"github.com/azscep/azscep/internal/store"
)

// Status adapts the store to what the CRL publisher and the OCSP responder read: the revocation index, an
// ETag-protected CRL number shared by every instance, and one point read per certificate status.
type Status struct {
	Store store.Store
	// Now is the clock of NextCRLNumber's floor (nil: time.Now).
	Now func() time.Time
}

var (
	_ crl.Source            = Status{}
	_ crl.Counter           = Status{}
	_ crl.GenerationSource  = Status{}
	_ ocsp.StatusSource     = Status{}
	_ ocsp.GenerationSource = Status{}
)

// RevocationGeneration reads the shared revocation generation (one point read) for CRL publishers, which only
// need to know that something was revoked.
func (s Status) RevocationGeneration(ctx context.Context) (uint64, error) {
	g, _, err := readGeneration(ctx, s.Store)
	if err != nil {
		return 0, err
	}
	return g.N, nil
}

// RevokedSince reads the shared revocation generation (one point read) for OCSP responders: the current
// generation and the serials revoked after generation after, or complete=false when the recent history does not
// reach back that far.
func (s Status) RevokedSince(ctx context.Context, after uint64) (uint64, []*big.Int, bool, error) {
	g, _, err := readGeneration(ctx, s.Store)
	if err != nil {
		return 0, nil, false, err
	}
	names, complete := g.since(after)
	serials := make([]*big.Int, 0, len(names))
	for _, n := range names {
		if v, err := store.ParseSerial(n); err == nil {
			serials = append(serials, v)
		}
	}
	return g.N, serials, complete, nil
}

// RevokedEntries lists the revocation index, with each certificate's notAfter: the CRL publisher drops an expired
// certificate's entry once a CRL signed after its expiry has listed it (RFC 5280 §3.3). Entries without a notAfter
// (indexed before the index kept it) stay.
func (s Status) RevokedEntries(ctx context.Context) ([]crl.Entry, error) {
	list, err := s.Store.ListRevoked(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]crl.Entry, 0, len(list))
	for _, r := range list {
		n, err := store.ParseSerial(r.Serial)
		if err != nil {
			continue // a malformed index row cannot be published; the record itself is still revoked
		}
		out = append(out, crl.Entry{Serial: n, RevokedAt: r.RevokedAt, Reason: r.Reason, NotAfter: r.NotAfter})
	}
	return out, nil
}

const crlNumberDoc = "crl-number"

// NextCRLNumber increments the shared counter with an ETag-conditioned write, so two instances can never
// publish the same number (RFC 5280 §5.2.3). A lost race is retried after a jittered pause (contentionPause).
//
// The next number is at least the current Unix time in seconds: tables restored from a backup (azscep restore)
// hold the counter as it was then, and the CRLs published since must not be followed by lower numbers, which
// relying parties take for older CRLs. The counter, not the clock, keeps the numbers increasing: an instance whose
// clock is behind still takes the counter plus one.
func (s Status) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	for attempt := 0; attempt < contentionAttempts; attempt++ {
		if err := contentionPause(ctx, attempt); err != nil {
			return nil, fmt.Errorf("allocating CRL number: %w", err)
		}
		cur, etag, err := s.readCRLNumber(ctx)
		if err != nil {
			return nil, err
		}
		next := new(big.Int).Add(cur, big.NewInt(1))
		if floor := big.NewInt(now().Unix()); next.Cmp(floor) < 0 {
			next = floor
		}
		_, err = s.Store.PutMeta(ctx, crlNumberDoc, []byte(next.Text(16)), etag)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
			continue // another instance took this number
		}
		if err != nil {
			return nil, fmt.Errorf("writing CRL number: %w", err)
		}
		return next, nil
	}
	return nil, fmt.Errorf("allocating CRL number: %w", store.ErrConflict)
}

// CurrentCRLNumber reads the shared counter (one point read): the last number NextCRLNumber handed out on any
// instance, or 0 before the first.
func (s Status) CurrentCRLNumber(ctx context.Context) (*big.Int, error) {
	cur, _, err := s.readCRLNumber(ctx)
	return cur, err
}

// readCRLNumber reads the counter document and its ETag; a missing document is 0 with no ETag.
func (s Status) readCRLNumber(ctx context.Context) (*big.Int, string, error) {
	raw, etag, err := s.Store.GetMeta(ctx, crlNumberDoc)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return new(big.Int), "", nil
	case err != nil:
		return nil, "", fmt.Errorf("reading CRL number: %w", err)
	}
	cur, ok := new(big.Int).SetString(string(raw), 16)
	if !ok {
		return nil, "", fmt.Errorf("stored CRL number %q is not hexadecimal", raw)
	}
	return cur, etag, nil
}

// CertificateStatus answers good for issued certificates, revoked with time and reason, and unknown for anything
// never delivered (pending, abandoned, withheld) or never issued here; the last without any record is Absent, which
// the responder may remember (no certificate is signed before its pending record exists).
func (s Status) CertificateStatus(ctx context.Context, serial *big.Int) (ocsp.Status, error) {
	rec, err := s.Store.Get(ctx, store.SerialString(serial))
	if errors.Is(err, store.ErrNotFound) {
		return ocsp.Status{Absent: true}, nil
	}
	if err != nil {
		return ocsp.Status{}, err
	}
	switch {
	case rec.Status == store.StatusRevoked:
		return ocsp.Status{Known: true, Revoked: true, RevokedAt: rec.RevokedAt, Reason: rec.RevocationReason}, nil
	case rec.Status == store.StatusIssued && !rec.Withheld:
		return ocsp.Status{Known: true}, nil
	}
	return ocsp.Status{}, nil
}

// CRLDER adapts the publisher for SCEP GetCRL.
type CRLDER struct{ Publisher *crl.Publisher }

// CurrentDER returns the current CRL.
func (c CRLDER) CurrentDER(ctx context.Context) ([]byte, error) {
	cur, err := c.Publisher.Current(ctx)
	if err != nil {
		return nil, err
	}
	return cur.DER, nil
}

// ResponderRecords records the certificates the CA issues to itself — OCSP responder certificates (the zero
// Source and Profile) and SCEP RA certificates (RARecords) — under the same rule as every other certificate: a
// pending record before the signature, the issued certificate before it is used.
type ResponderRecords struct {
	Store store.Store
	Now   func() time.Time
	// Source and Profile name the kind of certificate on its record; default "ocsp" and "ocsp-responder".
	Source, Profile string

	mu      sync.Mutex
	pending map[string]*store.Record
}

var _ ocsp.Recorder = (*ResponderRecords)(nil)

// Planned inserts the pending record for a responder certificate about to be signed.
func (r *ResponderRecords) Planned(ctx context.Context, tmpl *x509.Certificate) error {
	now := r.now()
	source, profile := r.Source, r.Profile
	if source == "" {
		source, profile = SourceOCSP, "ocsp-responder"
	}
	rec := &store.Record{Serial: store.SerialString(tmpl.SerialNumber), Status: store.StatusPending,
		Subject: tmpl.Subject.String(), NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter, Source: source,
		Endpoint: profile, Profile: profile, Requester: "azscep", Created: now, Updated: now}
	if err := r.Store.Insert(ctx, rec); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string]*store.Record{}
	}
	r.pending[rec.Serial] = rec
	return nil
}

// Issued moves the record to issued with the signed certificate.
func (r *ResponderRecords) Issued(ctx context.Context, cert *x509.Certificate) error {
	serial := store.SerialString(cert.SerialNumber)
	r.mu.Lock()
	rec, ok := r.pending[serial]
	delete(r.pending, serial)
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("responder certificate %s was never planned", serial)
	}
	rec.Status, rec.CertDER, rec.Issuer = store.StatusIssued, cert.Raw, cert.Issuer.String()
	rec.SHA1, rec.SHA256 = thumbprints(cert.Raw)
	rec.Updated = r.now()
	return r.Store.Update(ctx, rec, store.StatusPending)
}

func (r *ResponderRecords) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// thumbprints are the upper-case hex SHA-1 and SHA-256 of a certificate, as records carry them.
func thumbprints(der []byte) (string, string) {
	s1, s256 := sha1.Sum(der), sha256.Sum256(der)
	return strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))
}
