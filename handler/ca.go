package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/azscep/azscep/internal/config"
	"github.com/azscep/azscep/internal/custody"
	"github.com/azscep/azscep/internal/revocation"
	"github.com/azscep/azscep/internal/store"
)

// command runs an admin subcommand. Output for the operator goes to stdout; errors are returned.
func command(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string) error {
	switch args[0] {
	case "ca":
		if len(args) < 2 {
			return fmt.Errorf("ca needs a command: %w", errUsage)
		}
		return caCommand(ctx, cfg, args[1], args[2:], os.Stdout, buildOptions{})
	case "revocation-sync":
		return revocationSyncCommand(ctx, cfg, log, os.Stdout)
	case "revoke":
		return revokeCommand(ctx, cfg, log, args[1:], os.Stdout, buildOptions{})
	case "backup", "restore":
		return backupCommand(ctx, cfg, args[0] == "restore", args[1:], os.Stdout, buildOptions{})
	case "local-help":
		return localHelp(cfg, os.Stdout)
	}
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}

// operator is the admin commands' credential in azure mode (opts.credential in tests, else the operator's own), and
// who it is, which it prints before anything is done.
func operator(ctx context.Context, cfg *config.Config, opts buildOptions) (azcore.TokenCredential, string, error) {
	cred := opts.credential
	if cred == nil {
		var err error
		if cred, err = azureCredential(cfg); err != nil {
			return nil, "", err
		}
	}
	who, err := describeIdentity(ctx, cfg.KeyVaultURL, cred)
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(os.Stderr, "azscep: acting as %s\n", who)
	return cred, who, nil
}

// caCommand runs `azscep ca sub`. opts.store, opts.credential and opts.kvOptions replace Table Storage, the admin's
// credential and the Key Vault transport in tests; production passes the zero value.
func caCommand(ctx context.Context, cfg *config.Config, sub string, args []string, out io.Writer, opts buildOptions) error {
	fs, o := caFlags(sub)
	if fs == nil {
		return fmt.Errorf("unknown ca command %q: %w", sub, errUsage)
	}
	fs.SetOutput(io.Discard) // the caller prints the error and the usage once
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	// A bad subject, validity or key choice is a configuration error (exit 2), which postprovision does not retry.
	name, err := parseDN(o.subject)
	if err != nil {
		return fmt.Errorf("-subject: %v: %w", err, errUsage)
	}
	days, err := time.ParseDuration(strings.Replace(o.validity, "d", "h", 1))
	if strings.HasSuffix(o.validity, "d") {
		days *= 24
	}
	if err != nil || days < 24*time.Hour {
		return fmt.Errorf("bad -validity %q: %w", o.validity, errUsage)
	}
	if sub == "import" && o.certFile == "" {
		return fmt.Errorf("import needs -cert chain.pem: %w", errUsage)
	}
	if cfg.Mode == config.ModeLocal {
		// Before anything is made: a local CA that ignored a flag would be a CA the operator did not ask for.
		if err := checkLocal(sub, o); err != nil {
			return fmt.Errorf("%v: %w", err, errUsage)
		}
	}
	now := time.Now()
	var cred azcore.TokenCredential
	if cfg.Mode != config.ModeLocal {
		if cred, _, err = operator(ctx, cfg, opts); err != nil { // who acts, before anything is touched
			return err
		}
	}
	// The store records every RA certificate (local mode too: Azurite).
	st := opts.store
	if st == nil {
		if st, err = openStore(ctx, cfg); err != nil {
			return err
		}
	}
	if cfg.Mode == config.ModeLocal {
		return caLocal(ctx, cfg, st, sub, name, days, o, now, out)
	}
	v, err := vault(cfg, cred, st, opts.kvOptions)
	if err != nil {
		return err
	}
	v.Recorder = revocation.RARecords(st)
	switch sub {
	case "init":
		res, err := v.Init(ctx, custody.VaultInitOptions{KeyType: o.keyType, KeySize: o.keySize, Curve: o.curve,
			Subordinate: o.subordinate, Root: custody.RootOptions{Subject: name, Validity: days}}, now)
		if errors.Is(err, custody.ErrInitOptions) {
			return fmt.Errorf("%v: %w", err, errUsage)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "key %s (created: %t)\nroot created: %t\nRA created: %t\n", res.KID, res.KeyCreated,
			res.RootCreated, res.RACreated)
		if res.CSR != nil {
			fmt.Fprintf(out, "Have this CSR signed by the parent CA, then run `azscep ca import -cert chain.pem`:\n%s",
				pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: res.CSR}))
		}
		return nil
	case "import":
		chain, err := readChain(o.certFile)
		if err != nil {
			return err
		}
		if err := v.Import(ctx, chain, "", now); err != nil {
			return err
		}
		fmt.Fprintln(out, "imported", chain[0].Subject.String())
		return nil
	case "rotate-ra":
		if cfg.RAMode == "ca" {
			return errors.New("CA-decrypt mode has no RA key to rotate")
		}
		keys, err := v.Load(ctx, now)
		if errors.Is(err, custody.ErrNotInitialized) {
			// The RA envelope was lost (docs/deployment.md §10): make a new one.
			if err := v.RotateRA(ctx, "", now); err != nil {
				return err
			}
			fmt.Fprintln(out, "RA created; instances pick it up within", custody.RARefreshInterval)
			return nil
		}
		if err != nil {
			return err
		}
		return rotateRA(ctx, st, v, keys, o.compromised, now, out)
	case "show":
		chain, kid, ra, err := v.Show(ctx)
		if err != nil {
			return err
		}
		if len(chain) == 0 {
			fmt.Fprintln(out, "no CA certificate yet: a subordinate CA awaits `azscep ca import -cert chain.pem` "+
				"(`azscep ca init -subordinate` prints its CSR again)")
		}
		printChain(out, chain, ra)
		fmt.Fprintf(out, "CA key: %s\n", kid)
		return nil
	}
	return fmt.Errorf("unknown ca command %q", sub)
}

// localKeyTypes maps the Key Vault key types `ca init` takes to the local key type that stands in for each.
var localKeyTypes = map[string]string{"RSA-HSM": "RSA", "RSA": "RSA", "EC-HSM": "EC", "EC": "EC"}

// checkLocal refuses what local mode cannot do: a subordinate CA (it makes self-signed roots only), or a key type,
// size or curve that a Key Vault CA key could not have either. Local mode honours the size and curve.
func checkLocal(sub string, o *caOptions) error {
	switch sub {
	case "init":
		if o.subordinate {
			return errors.New("-subordinate: local mode makes self-signed roots only; a subordinate CA needs azure mode")
		}
		kt := localKeyTypes[o.keyType]
		if kt == "" {
			return fmt.Errorf("-key-type %q is not RSA-HSM, EC-HSM, RSA or EC", o.keyType)
		}
		return custody.CheckLocalKey(kt, o.keySize, o.curve)
	case "import":
		return errors.New("local mode makes self-signed roots only, so there is nothing to import; a subordinate CA needs azure mode")
	}
	return nil
}

func caLocal(ctx context.Context, cfg *config.Config, st store.Store, sub string, name pkix.Name, validity time.Duration,
	o *caOptions, now time.Time, out io.Writer) error {
	switch sub {
	case "init":
		created, err := custody.InitLocal(cfg.LocalKeyDir, custody.LocalInitOptions{Subject: name, Validity: validity,
			KeyType: localKeyTypes[o.keyType], KeySize: o.keySize, Curve: o.curve, NoRA: cfg.RAMode == "ca",
			Recorder: revocation.RARecords(st)}, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "local CA in %s (created: %t)\n", cfg.LocalKeyDir, created)
		return nil
	case "rotate-ra":
		keys, err := custody.LoadLocal(cfg.LocalKeyDir, now)
		if err != nil {
			return err
		}
		return rotateRA(ctx, st, custody.LocalRA{Dir: cfg.LocalKeyDir}, keys, o.compromised, now, out)
	case "show":
		k, err := custody.LoadLocal(cfg.LocalKeyDir, now)
		if err != nil {
			return err
		}
		printChain(out, k.Chain, k.RACert)
		return nil
	}
	return fmt.Errorf("unknown ca command %q", sub)
}

// rotateRA is `ca rotate-ra`: a new RA certificate (recorded), the current one kept for the overlap (clients
// cache GetCACert) and revoked by the hourly timer afterwards — or revoked at once with -compromised.
func rotateRA(ctx context.Context, st store.Store, ras custody.RAStore, keys *custody.Keys, compromised bool, now time.Time, out io.Writer) error {
	if cur, _ := keys.RA(); cur == nil {
		return errors.New("CA-decrypt mode has no RA key to rotate")
	} else if err := revocation.RecordExisting(ctx, st, cur, now); err != nil {
		return err
	}
	rv := revocation.RARevoker{Store: st}
	k := &custody.RAKeeper{Store: ras, Keys: keys, Recorder: revocation.RARecords(st), Revoke: rv.Revoke, Revoked: rv.Revoked,
		Now: func() time.Time { return now }}
	reason := "ca rotate-ra"
	if compromised {
		reason += " -compromised"
	}
	cert, old, err := k.Rotate(ctx, reason, compromised)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "RA rotated: new RA certificate %s (not after %s); instances pick it up within %s\n",
		store.SerialString(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339), custody.RARefreshInterval)
	if compromised {
		fmt.Fprintf(out, "previous RA certificate %s revoked (keyCompromise)\n", store.SerialString(old.SerialNumber))
	} else {
		fmt.Fprintf(out, "previous RA certificate %s keeps working until %s, when the hourly timer revokes it (superseded)\n",
			store.SerialString(old.SerialNumber), custody.RetireAt(cert, custody.RAOverlap).UTC().Format(time.RFC3339))
	}
	return nil
}

func printChain(out io.Writer, chain []*x509.Certificate, ra *x509.Certificate) {
	for i, c := range chain {
		fmt.Fprintf(out, "chain[%d]: %s\n  not after: %s\n  sha256: %s\n", i, c.Subject.String(),
			c.NotAfter.UTC().Format(time.RFC3339), custody.Fingerprint(c))
	}
	if ra != nil {
		fmt.Fprintf(out, "RA: %s\n  not after: %s\n  sha256: %s\n", ra.Subject.String(),
			ra.NotAfter.UTC().Format(time.RFC3339), custody.Fingerprint(ra))
	}
}

func readChain(path string) ([]*x509.Certificate, error) {
	if path == "" {
		return nil, errors.New("-cert is required")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return custody.ParsePEMCertificates(data)
}

// parseDN reads "CN=x,O=y,C=z" (no escaped commas; CA subjects do not need them).
func parseDN(s string) (pkix.Name, error) {
	var n pkix.Name
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return n, fmt.Errorf("bad subject part %q", part)
		}
		switch strings.ToUpper(k) {
		case "CN":
			n.CommonName = v
		case "O":
			n.Organization = append(n.Organization, v)
		case "OU":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "C":
			n.Country = append(n.Country, v)
		case "L":
			n.Locality = append(n.Locality, v)
		case "ST":
			n.Province = append(n.Province, v)
		default:
			return n, fmt.Errorf("subject attribute %q is not supported", k)
		}
	}
	if n.CommonName == "" {
		return n, errors.New("subject needs a CN")
	}
	return n, nil
}

// revocationSyncCommand runs one Intune revocation cycle by hand (`azscep revocation-sync`).
func revocationSyncCommand(ctx context.Context, cfg *config.Config, log *slog.Logger, out io.Writer) error {
	d, err := build(ctx, cfg, log, buildOptions{})
	if err != nil {
		return err
	}
	if d.sync == nil {
		if f := cfg.Fault(config.FeatureIntune); f != nil {
			return fmt.Errorf("Intune is disabled: %w", f)
		}
		return errors.New("Intune is not configured (set AZSCEP_INTUNE_TENANT_ID)")
	}
	run, err := d.sync.Run(ctx, "manual")
	fmt.Fprintf(out, "run %s: resumed %d, downloaded %d, foreign %d, revoked %d, not found %d, failed %d, uploaded %d\n",
		run.ID, run.Resumed, run.Downloaded, run.Foreign, run.Revoked, run.NotFound, run.Failed, run.Uploaded)
	for _, e := range run.Errors {
		fmt.Fprintln(out, "  error:", e)
	}
	return err
}

// localHelp prints how to enroll against the CA `make run` starts.
func localHelp(cfg *config.Config, out io.Writer) error {
	if cfg.Mode != config.ModeLocal {
		return errors.New("local-help is for local mode")
	}
	base := cfg.URL("")
	fmt.Fprintf(out, `
azscep is starting on %[1]s (local mode: keys in %[2]s, records in Azurite)

  SCEP URL:          %[1]s/api/scep/static
  static challenge:  %[3]s
  CA certificate:    curl -s %[1]s/api/ca -o ca.der

Enroll a certificate with Debian's scepclient (apt-get install scep), in another terminal:

  mkdir -p static-demo && cd static-demo && scepclient -server-url %[1]s/api/scep/static \
      -private-key device.key -certificate device.pem -challenge %[3]s -cn device-0001 \
      && openssl x509 -in device.pem -noout -subject -issuer -dates

(scepclient keeps csr.pem beside the certificate and re-uses it: give each enrollment its own directory.)

`, base, cfg.LocalKeyDir, config.LocalStaticChallenge)
	if cfg.Intune.Enabled && cfg.Intune.CABundle != "" {
		fake := strings.TrimRight(cfg.Intune.AuthorityHost, "/")
		fmt.Fprintf(out, `Intune-style enrollment against the local Intune fake (%[2]s): register a challenge the way
Intune would when it sends a SCEP profile to a device, then enroll with it:

  curl -sk -X POST %[2]s/fake/challenges -d '{"password":"intune-demo-0001","keySize":2048,
      "subject":"CN=device-0002,OU=MDM,O=scep-client,C=US"}'
  mkdir -p intune-demo && cd intune-demo && scepclient -server-url %[1]s/api/scep/intune \
      -private-key device.key -certificate device.pem -challenge intune-demo-0001 -cn device-0002
  curl -sk %[2]s/fake/journal      # what the CA sent to Intune: validateRequest, successNotification

`, base, fake)
	}
	if cfg.DevIssuer {
		fmt.Fprintf(out, `Enroll over REST with a token from the local development issuer (never available in Azure):

  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout app.key -subj /CN=app-0001 -out app.csr
  TOKEN=$(curl -s -X POST -d '{"roles":["CSR.Request.Db"]}' %[1]s/api/dev/token | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/pkcs10' \
      --data-binary @app.csr -H 'Accept: application/x-pem-file' %[1]s/api/csr

Certificate console (search, revoke, CA overview, request certificates), signing in with the same issuer:

  open %[1]s/api/console/

`, base)
	}
	fmt.Fprintln(out, "Stop with Ctrl-C. Local state lives in .local/ (delete it to start over).")
	return nil
}
