package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// revokeUsage is `azscep revoke`'s help.
const revokeUsage = `Usage: azscep revoke -serial SERIAL [-reason REASON] [-comment TEXT]

Revokes one certificate with your own credential on Table Storage, as the admin API does (index entry, record,
revocation generation, key mark for keyCompromise): the break-glass path for when the admin API cannot be used,
e.g. after an upgrade, until the app's identity holds the Graph permissions the API checks tokens with. Every
instance publishes the revocation in its CRL and OCSP answers within 30 seconds. No Key Vault operation.
REASON is one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation,
privilegeWithdrawn (default unspecified).
`

// revokeCommand runs `azscep revoke`. opts.store and opts.credential replace Table Storage and the operator's
// credential in tests.
func revokeCommand(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string, out io.Writer, opts buildOptions) error {
	fs := flag.NewFlagSet("azscep revoke", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serial := fs.String("serial", "", "the certificate's serial number (hex)")
	reasonName := fs.String("reason", "unspecified", "the RFC 5280 revocation reason")
	comment := fs.String("comment", "", "recorded with the revocation")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 || *serial == "" {
		return fmt.Errorf("revoke needs -serial and nothing else: %w", errUsage)
	}
	reason, err := revocation.ReasonCode(*reasonName)
	if err != nil {
		return fmt.Errorf("-reason: %v: %w", err, errUsage)
	}
	by := "cli:local"
	if cfg.Mode == config.ModeAzure {
		// Who acts is printed before anything is touched.
		_, who, err := operator(ctx, cfg, opts)
		if err != nil {
			return err
		}
		by = "cli:" + who
	}
	st := opts.store
	if st == nil {
		if st, err = openStore(ctx, cfg); err != nil {
			return err
		}
	}
	outcome, rec, err := revocation.RevokeAudited(ctx, st, log, *serial, reason, by, "", *comment, time.Now())
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, revocation.ErrNotRevocable):
		return fmt.Errorf("no revocable certificate with serial %s: %w", *serial, err)
	case err != nil && rec != nil && rec.Status == store.StatusRevoked:
		return fmt.Errorf("%s is revoked and will be published, but its last writes failed (run the same command "+
			"again to complete them): %w", rec.Serial, err)
	case err != nil:
		return fmt.Errorf("revoking %s: %w", *serial, err)
	}
	if outcome == revocation.AlreadyRevoked {
		fmt.Fprintf(out, "%s was already revoked (%s, %s)\n", rec.Serial, revocation.ReasonName(rec.RevocationReason),
			rec.RevokedAt.UTC().Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(out, "%s revoked (%s, %s); instances publish it within 30 seconds\n", rec.Serial,
		revocation.ReasonName(rec.RevocationReason), rec.RevokedAt.UTC().Format(time.RFC3339))
	return nil
}
