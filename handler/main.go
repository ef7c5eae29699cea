// Command azscep is the custom-handler binary: with no arguments it serves the Functions routes on
// 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT; with `ca ...` or `revocation-sync` it runs an admin command;
// `azscep help` lists every command (cli.go).
//
// This package only loads configuration, wires the internal packages together and serves. Anything that makes a
// decision lives under internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/azscep/azscep/internal/config"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is the process: exit 0 on success, 1 when a command fails, 2 for a bad command line or configuration.
func run(args []string) int {
	if code, done := preConfig(args, os.Stdout, os.Stderr); done {
		return code
	}
	if len(args) > 0 && args[0] == "config" {
		return configCheck(os.Environ(), os.Stdout, os.Stderr) // its own exit status for a configuration that does not load
	}
	cfg, err := config.Load(os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "azscep: configuration error: %v (azscep settings lists every setting, azscep help the commands)\n", err)
		return 2
	}
	log := newLogger(cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if len(args) > 0 {
		if err := command(ctx, cfg, log, args); err != nil {
			return commandFailed(cfg, args, err, os.Stderr)
		}
		return 0
	}
	if err := cfg.CheckServe(); err != nil {
		fmt.Fprintf(os.Stderr, "azscep: configuration error: %v\n", err)
		return 2
	}
	tuneGC()
	if err := serve(ctx, cfg, log, buildOptions{}); err != nil {
		fmt.Fprintf(os.Stderr, "azscep: %v\n", err)
		return 1
	}
	return 0
}

// commandFailed prints why an admin command failed and returns its exit status: 2 for a wrong command line (with
// the usage) or a configuration error, 1 otherwise. Exit 1 is what the postprovision hook retries (for 12 minutes,
// while role assignments apply), so a fault that no wait fixes must be exit 2: among them a Key Vault or Table
// Storage host name that does not exist (unresolvableEndpoint), which the hook retries for 3 minutes only (a name
// new to DNS), recognising it by "does not resolve" in the message.
func commandFailed(cfg *config.Config, args []string, err error, stderr io.Writer) int {
	if errors.Is(err, errUsage) {
		fmt.Fprintf(stderr, "azscep: %s\n\n%s", strings.TrimSuffix(err.Error(), ": "+errUsage.Error()),
			mustHelp(args[:min(2, len(args))]...))
		return 2
	}
	if msg, ok := unresolvableEndpoint(cfg, err); ok {
		fmt.Fprintf(stderr, "azscep: configuration error: %s\n", msg)
		return 2
	}
	fmt.Fprintf(stderr, "azscep: %v\n", err)
	return 1
}

// unresolvableEndpoint says which setting is wrong when err comes from a DNS answer that the host of
// AZSCEP_KEYVAULT_URL or AZSCEP_TABLES_ENDPOINT does not exist (NXDOMAIN: *net.DNSError with IsNotFound): a typo in
// the vault or storage account name. A timeout or a temporary resolver failure (IsTimeout, IsTemporary) is not,
// nor is a missing name that is not ours (a sign-in endpoint: the machine's DNS, not a setting). Only the one-shot
// commands ask: the Key Vault client still retries such a failure like any transport failure, and serving keeps
// waiting it out at start-up (transientAtStart), as it would a private DNS zone that is not linked yet.
func unresolvableEndpoint(cfg *config.Config, err error) (string, bool) {
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound || dnsErr.IsTemporary || dnsErr.IsTimeout {
		return "", false
	}
	host := strings.TrimSuffix(dnsErr.Name, ".")
	for _, e := range []struct{ what, url, setting, name string }{
		{"Key Vault", cfg.KeyVaultURL, "AZSCEP_KEYVAULT_URL", "the vault name"},
		{"Table Storage", cfg.TablesEndpoint, "AZSCEP_TABLES_ENDPOINT", "the storage account name"},
	} {
		if u, perr := url.Parse(e.url); perr == nil && u.Hostname() != "" && strings.EqualFold(u.Hostname(), host) {
			return fmt.Sprintf("%s host %s does not resolve (%s): check %s (%s)", e.what, u.Hostname(), dnsErr.Err,
				e.setting, e.name), true
		}
	}
	return "", false
}

// newLogger writes JSON lines to stdout: the Functions host logs every stderr line as an error, so stderr is
// kept for real errors only.
func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: l}))
}

// serveGCPercent is the collector's target while serving, unless GOGC says otherwise. An enrollment allocates about
// 0.6 MB (CMS encoding, the Table SDK's transaction buffers) while the live heap stays near 5 MB, so Go's default of
// 100 runs a collection every few enrollments; 400 does a quarter of that marking for about 13 MB more RSS at the
// peak of 32 concurrent enrollments (38 MB instead of 25 MB), which an instance with 2 GB does not miss.
// GOMEMLIMIT, when set, still bounds the heap.
const serveGCPercent = 400

// tuneGC applies serveGCPercent to this process unless the operator set GOGC.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serveGCPercent)
	}
}
