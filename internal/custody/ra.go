package custody

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/azscep/azscep/internal/store"
)

// RA lifecycle defaults.
const (
	// RARenewBefore: the hourly timer renews the RA certificate when it expires within this.
	RARenewBefore = 30 * 24 * time.Hour
	// RAOverlap is how long the previous RA keeps working after a rotation: SCEP clients cache GetCACert, so
	// envelopes encrypted to it are still opened. After it the hourly timer revokes it (reason superseded).
	RAOverlap = 7 * 24 * time.Hour
	// RARefreshInterval is how often each instance re-reads the stored RA (one store read, or one small file
	// read locally; the key is opened again — one Key Vault unwrap — only when it changed): after a rotation with
	// -compromised, the old RA opens envelopes on other instances for at most this long. An envelope no RA opens
	// also makes the SCEP server re-read it (scep.Config.RefreshRA).
	RARefreshInterval = 30 * time.Second
	// defaultRACommonName is the RA certificate's common name unless one is configured.
	defaultRACommonName = "azscep SCEP RA"
	// raBackdate is how far an RA certificate's notBefore lies before its issuance (IssueRACertificate).
	raBackdate = time.Hour
	// raMinRenewalGain is how much later than the current RA certificate a new one must end for the timer to renew
	// it because it expires. RA certificates end with the CA at the latest, so once the RA ends with the CA a
	// renewal gains nothing, and renewing anyway would repeat every hour, each time revoking the RA from the hour
	// before (superseded twice): clients with a cached GetCACert would fail, and the CRL would grow an entry an
	// hour. Real renewals gain far more: years, or once the gap to the CA's end. A day is well above the noise (the
	// clock moving between hourly runs, notAfter truncated to the second), and an RA ending less than a day before
	// its CA is not worth cutting short the overlap of the RA before it.
	raMinRenewalGain = 24 * time.Hour
)

// ErrRAChanged means the stored RA changed while a rotation was being prepared (another instance or an operator
// rotated it): nothing was stored; the caller re-reads.
var ErrRAChanged = errors.New("custody: the RA changed meanwhile")

// RAState is the stored RA: the current one and, during the overlap after a rotation, the previous one.
type RAState struct {
	Current  RA
	Previous *RA
}

// RAStore keeps the RA where the mode keeps it: wrapped under the key-encryption key in the store (Key Vault
// mode, *Vault) or in files (local mode, LocalRA).
type RAStore interface {
	// ReadRA returns the stored RA and a version identifying it; when the stored version is known it returns a
	// nil state without opening any key (the cheap periodic check).
	ReadRA(ctx context.Context, known string) (*RAState, string, error)
	// StoreRA issues a new RA certificate (recorded with rec) for a new key and stores it as current — keeping the
	// current one as the previous RA when keepCurrent, dropping any older previous RA — if the stored RA is still
	// at version (ErrRAChanged otherwise).
	StoreRA(ctx context.Context, rec Recorder, version string, keepCurrent bool, cn string, now time.Time) (*x509.Certificate, error)
	// ForgetPreviousRA stores the RA without its previous one if it is still at version.
	ForgetPreviousRA(ctx context.Context, version string) error
}

// RetireAt is when the RA replaced by cur (cur's predecessor) is revoked: RAOverlap after cur was issued.
func RetireAt(cur *x509.Certificate, overlap time.Duration) time.Time {
	return cur.NotBefore.Add(raBackdate).Add(overlap)
}

// RAKeeper keeps an instance's RA current and, on the hourly timer, renews and retires RA certificates.
type RAKeeper struct {
	Store    RAStore
	Keys     *Keys
	Recorder Recorder // records every RA certificate issued (pending before the CA signs, issued after)
	// Revoke revokes a superseded RA certificate by serial (idempotent).
	Revoke func(ctx context.Context, serial, reason string) error
	// Revoked reports whether the record of serial says revoked (an admin revoked the current RA).
	Revoked func(ctx context.Context, serial string) (bool, error)
	// RecordExisting, when set, gives an RA certificate signed before RA certificates were recorded its record
	// (Maintain calls it for the current and previous RA before anything else, so they can be revoked).
	RecordExisting func(ctx context.Context, cert *x509.Certificate) error
	CommonName     string
	RenewBefore    time.Duration // default RARenewBefore
	Overlap        time.Duration // default RAOverlap
	Now            func() time.Time
	Logger         *slog.Logger

	mu      sync.Mutex
	version string
	// endsWithCA is the serial of the RA certificate last reported as ending with the CA, so the hourly timer
	// reports it once, not every hour.
	endsWithCA string
}

func (k *RAKeeper) defaults() {
	if k.RenewBefore == 0 {
		k.RenewBefore = RARenewBefore
	}
	if k.Overlap == 0 {
		k.Overlap = RAOverlap
	}
	if k.Now == nil {
		k.Now = time.Now
	}
	if k.Logger == nil {
		k.Logger = slog.New(slog.DiscardHandler)
	}
	if k.CommonName == "" {
		k.CommonName = defaultRACommonName
	}
}

// Refresh re-reads the stored RA and installs it when it changed (every instance, every RARefreshInterval).
func (k *RAKeeper) Refresh(ctx context.Context) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refreshLocked(ctx)
}

func (k *RAKeeper) refreshLocked(ctx context.Context) (bool, error) {
	k.defaults()
	st, version, err := k.Store.ReadRA(ctx, k.version)
	if err != nil {
		return false, fmt.Errorf("custody: re-reading the RA: %w", err)
	}
	if st == nil {
		return false, nil
	}
	if err := k.Keys.SetRA(st.Current, st.Previous, RetireAt(st.Current.Cert, k.Overlap)); err != nil {
		return false, err
	}
	changed := k.version != ""
	k.version = version
	if changed {
		k.Logger.Info("RA certificate picked up", "serial", store.SerialString(st.Current.Cert.SerialNumber),
			"not_after", st.Current.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return changed, nil
}

// Run refreshes every interval until ctx ends.
func (k *RAKeeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := k.Refresh(ctx); err != nil && ctx.Err() == nil {
				k.Logger.Warn("RA refresh failed; keeping the current RA", "err", err)
			}
		}
	}
}

// Rotate issues a new RA now (`ca rotate-ra`): the current RA becomes the previous one and keeps opening
// envelopes for the overlap; an older previous RA still in its overlap is revoked first. With compromised, the
// current RA is not kept but revoked at once (keyCompromise).
func (k *RAKeeper) Rotate(ctx context.Context, reason string, compromised bool) (cert, old *x509.Certificate, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.refreshLocked(ctx); err != nil {
		return nil, nil, err
	}
	if st := k.Keys.live.Load(); st != nil {
		old = st.cur.Cert
	}
	if cert, err = k.rotateLocked(ctx, !compromised, reason); err != nil {
		return nil, nil, err
	}
	if compromised && old != nil {
		if err := k.Revoke(ctx, store.SerialString(old.SerialNumber), "keyCompromise"); err != nil {
			return cert, old, fmt.Errorf("custody: revoking the replaced RA certificate %s: %w", store.SerialString(old.SerialNumber), err)
		}
	}
	return cert, old, nil
}

func (k *RAKeeper) rotateLocked(ctx context.Context, keepCurrent bool, reason string) (*x509.Certificate, error) {
	st := k.Keys.live.Load()
	if st == nil {
		return nil, errors.New("custody: no RA to rotate (CA-decrypt mode?)")
	}
	// Before the previous RA is revoked below: a rotation that cannot issue must not change anything.
	if err := caValidFor(k.Keys.CA(), k.Now()); err != nil {
		return nil, err
	}
	if st.prev != nil {
		// Superseded twice: it would otherwise be dropped while still valid.
		if err := k.Revoke(ctx, store.SerialString(st.prev.Cert.SerialNumber), "superseded"); err != nil {
			return nil, fmt.Errorf("custody: revoking the previous RA certificate: %w", err)
		}
	}
	cert, err := k.Store.StoreRA(ctx, k.Recorder, k.version, keepCurrent, k.CommonName, k.Now())
	if err != nil {
		return nil, err
	}
	k.Logger.Info("RA certificate issued", "serial", store.SerialString(cert.SerialNumber), "reason", reason,
		"previous", store.SerialString(st.cur.Cert.SerialNumber), "previous_valid_until", RetireAt(cert, k.Overlap).UTC().Format(time.RFC3339))
	if _, err := k.refreshLocked(ctx); err != nil {
		return nil, err
	}
	return cert, nil
}

// Maintain is the hourly timer's RA step: pick up the stored RA; replace the current RA certificate when an
// admin revoked it (at once, without overlap), when it lacks the Certificate Request Agent EKU (made by an older
// version), or when it expires within RenewBefore and a new one would end more than a day later (not when it
// already ends with the CA, which it says once); revoke the previous RA once its overlap is over. It returns lines
// for the invocation's Logs.
func (k *RAKeeper) Maintain(ctx context.Context) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.refreshLocked(ctx); err != nil {
		return nil, err
	}
	st := k.Keys.live.Load()
	if st == nil {
		return nil, nil
	}
	now := k.Now()
	var lines []string
	cur := st.cur.Cert
	if k.RecordExisting != nil {
		for _, c := range []*RA{&st.cur, st.prev} {
			if c != nil {
				if err := k.RecordExisting(ctx, c.Cert); err != nil {
					return nil, err
				}
			}
		}
	}
	revoked, err := k.Revoked(ctx, store.SerialString(cur.SerialNumber))
	if err != nil {
		return nil, fmt.Errorf("custody: reading the RA certificate's record: %w", err)
	}
	why := ""
	switch {
	case revoked:
		why = "the current RA certificate was revoked"
	case !HasRAUsage(cur):
		why = "the current RA certificate lacks the Certificate Request Agent EKU"
	case cur.NotAfter.Sub(now) >= k.RenewBefore:
		// Not due.
	case raNotAfter(k.Keys.CA(), now).Sub(cur.NotAfter) > raMinRenewalGain:
		why = "the current RA certificate expires " + cur.NotAfter.UTC().Format(time.RFC3339)
	case k.endsWithCA != store.SerialString(cur.SerialNumber):
		k.endsWithCA = store.SerialString(cur.SerialNumber)
		ends := cur.NotAfter.UTC().Format(time.RFC3339)
		k.Logger.Warn("RA certificate ends with the CA certificate; not renewed, as a new one could not end later",
			"serial", k.endsWithCA, "not_after", ends, "ca_not_after", k.Keys.CA().NotAfter.UTC().Format(time.RFC3339))
		lines = append(lines, fmt.Sprintf("RA certificate %s ends with the CA certificate (%s): not renewed, a new one could not end later", k.endsWithCA, ends))
	}
	if why != "" {
		cert, err := k.rotateLocked(ctx, !revoked, why)
		if errors.Is(err, ErrRAChanged) {
			return append(lines, "RA changed meanwhile; renewal left to the next run"), nil
		}
		if err != nil {
			return lines, err
		}
		lines = append(lines, fmt.Sprintf("RA certificate renewed (%s): new serial %s", why, store.SerialString(cert.SerialNumber)))
		st = k.Keys.live.Load()
	}
	if st.prev != nil && !now.Before(st.retireAt) {
		serial := store.SerialString(st.prev.Cert.SerialNumber)
		if err := k.Revoke(ctx, serial, "superseded"); err != nil {
			return lines, fmt.Errorf("custody: revoking the previous RA certificate %s: %w", serial, err)
		}
		if err := k.Store.ForgetPreviousRA(ctx, k.version); err != nil && !errors.Is(err, ErrRAChanged) {
			return lines, err
		}
		if _, err := k.refreshLocked(ctx); err != nil {
			return lines, err
		}
		lines = append(lines, "previous RA certificate "+serial+" revoked after the overlap (superseded)")
	}
	return lines, nil
}
