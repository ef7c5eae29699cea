package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/azscep/azscep/internal/config"
)

// The command line. Help, version and settings need no settings at all: they answer before config.Load, so a
// newcomer (or an operator on a machine without the app's settings) can always ask the binary what it does.

// usage is the top-level help.
const usage = `azscep — a serverless certificate authority: SCEP and REST enrollment, CRL and OCSP, as an Azure
Functions custom handler.

Usage:
  azscep                        serve the Functions routes on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT
  azscep ca <command> [flags]   manage the CA: init, import, rotate-ra, show (see azscep ca --help)
  azscep revocation-sync        run one Intune revocation sync now
  azscep revoke -serial S       revoke a certificate with your own credential (break-glass; see azscep help revoke)
  azscep backup -out FILE       copy the tables (the CA's records) to FILE, with the types restore needs
  azscep restore -in FILE       insert a backup into the tables (docs/deployment.md, section 10)
  azscep local-help             how to enroll against the local CA that ` + "`make run`" + ` starts
  azscep config check           check the app settings as the service would load them, with their warnings
  azscep settings               the app settings azscep reads (the table in README.md)
  azscep version                module version and VCS revision of this binary
  azscep help [command]         this help, or a command's

Every command except help, settings and version reads its configuration from the environment (app settings in
Azure, AZSCEP_MODE=local for key files and Azurite); see azscep settings. In azure mode the admin commands use
the user-assigned managed identity when AZURE_CLIENT_ID is set, otherwise your own credential: azd's when
AZURE_TOKEN_CREDENTIALS=AzureDeveloperCLICredential (set by the azd hook), else the Azure CLI's.
`

// caSubcommands are the `azscep ca` commands with their summaries, in usage order.
var caSubcommands = []struct{ name, summary string }{
	{"init", "create or adopt the CA key, make a root (or a CSR with -subordinate), the KEK and the RA; idempotent"},
	{"import", "import the signed subordinate CA certificate and its issuers (-cert chain.pem)"},
	{"rotate-ra", "new RA key and certificate (recorded); instances pick it up within 30 seconds and the old RA keeps working for 7 days, then the hourly timer revokes it"},
	{"show", "print the chain, fingerprints and the CA key ID"},
}

// commandUsage is the help of the commands without subcommands.
var commandUsage = map[string]string{
	"revocation-sync": "Usage: azscep revocation-sync\n\nRuns one Intune revocation sync (download the revocation " +
		"requests of this CA, revoke, report\nback) with the app's settings, as the hourly timer does.\n",
	"revoke":     revokeUsage,
	"backup":     backupUsage,
	"restore":    restoreUsage,
	"local-help": "Usage: azscep local-help\n\nPrints how to enroll against the local CA that `make run` starts (local mode only).\n",
	"settings": "Usage: azscep settings\n\nPrints every app setting azscep reads, with its default, whether Azure " +
		"needs it and what it\nmeans, as a markdown table: the table in README.md, generated from the same list " +
		"(config.Settings).\n",
	"config": "Usage: azscep config check\n\nLoads the app settings from the environment as the service does and " +
		"prints what it finds:\nerrors (a setting that stops the service or disables a feature) and warnings (settings " +
		"that load\nbut weaken authorization, such as two static SCEP endpoints sharing one challenge, or a profile\n" +
		"pattern no name can match, which a later release refuses; or that do not work as written, such as\n" +
		"a REVOCATION_SCHEDULE the Functions host would not run). A Key Vault reference is not read;\nthe service " +
		"reads it at start and logs the warnings it causes then. Exit status: 0 without\nerrors (warnings or not), 1 " +
		"with errors, 2 for a wrong command line.\n",
	"version": "Usage: azscep version\n\nPrints the module version, the VCS revision and the Go version of this binary.\n",
	"help":    "Usage: azscep help [command]\n",
}

// errUsage marks a command line that is wrong: the caller prints the usage and exits 2.
var errUsage = errors.New("usage")

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// helpText returns the help for args (a command, optionally followed by a ca subcommand), or false.
func helpText(args []string) (string, bool) {
	if len(args) == 0 {
		return usage, true
	}
	switch cmd := args[0]; {
	case cmd == "ca" && len(args) > 1 && !isHelp(args[1]):
		fs, _ := caFlags(args[1])
		if fs == nil {
			return "", false
		}
		var b strings.Builder
		fs.SetOutput(&b)
		for _, c := range caSubcommands {
			if c.name == args[1] {
				fmt.Fprintf(&b, "Usage: azscep ca %s [flags]\n\n%s.\n", c.name, c.summary)
			}
		}
		flags := 0
		fs.VisitAll(func(*flag.Flag) { flags++ })
		if flags == 0 {
			b.WriteString("\nNo flags.\n")
		} else {
			b.WriteString("\nFlags:\n")
			fs.PrintDefaults()
		}
		return b.String(), true
	case cmd == "ca":
		var b strings.Builder
		b.WriteString("Usage: azscep ca <command> [flags]\n\nCommands:\n")
		for _, c := range caSubcommands {
			fmt.Fprintf(&b, "  %-10s  %s\n", c.name, c.summary)
		}
		b.WriteString("\nFlags (azscep ca <command> --help lists those of one command):\n")
		fs, _ := caFlags("")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		return b.String(), true
	case commandUsage[cmd] != "":
		return commandUsage[cmd], true
	}
	return "", false
}

// preConfig answers the commands that need no settings. It returns the exit code and true when it answered;
// false means args are for a configured command.
func preConfig(args []string, stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	// "azscep help X", "azscep X --help", "azscep ca X -h": help anywhere on the command line.
	if isHelp(args[0]) {
		text, ok := helpText(args[1:])
		if !ok {
			fmt.Fprintf(stderr, "azscep: no help for %q\n\n%s", strings.Join(args[1:], " "), usage)
			return 2, true
		}
		fmt.Fprint(stdout, text)
		return 0, true
	}
	for i, a := range args[1:] {
		if isHelp(a) {
			text, ok := helpText(args[:i+1])
			if !ok {
				break // unknown command or subcommand: reported below
			}
			fmt.Fprint(stdout, text)
			return 0, true
		}
	}
	switch args[0] {
	case "version":
		fmt.Fprint(stdout, versionText(debug.ReadBuildInfo()))
		return 0, true
	case "settings":
		fmt.Fprint(stdout, config.SettingsTable())
		return 0, true
	case "ca":
		if len(args) < 2 {
			fmt.Fprintf(stderr, "azscep: ca needs a command\n\n%s", mustHelp("ca"))
			return 2, true
		}
		if fs, _ := caFlags(args[1]); fs == nil {
			fmt.Fprintf(stderr, "azscep: unknown ca command %q\n\n%s", args[1], mustHelp("ca"))
			return 2, true
		}
		return 0, false
	case "config":
		if len(args) != 2 || args[1] != "check" {
			fmt.Fprintf(stderr, "azscep: config needs the command check\n\n%s", mustHelp("config"))
			return 2, true
		}
		return 0, false
	case "revocation-sync", "revoke", "backup", "restore", "local-help":
		return 0, false
	}
	fmt.Fprintf(stderr, "azscep: unknown command %q\n\n%s", args[0], usage)
	return 2, true
}

// mustHelp is the help of a known command (and ca subcommand), or the top-level usage.
func mustHelp(args ...string) string {
	if text, ok := helpText(args); ok {
		return text
	}
	return usage
}

// caOptions are the flags of the ca commands.
type caOptions struct {
	subject, validity, keyType, curve, certFile string
	keySize                                     int
	subordinate, compromised                    bool
}

// caFlags is the flag set of `ca sub` (sub "" lists every flag); nil for an unknown subcommand. Each subcommand
// accepts only its own flags; the options start at their defaults either way.
func caFlags(sub string) (*flag.FlagSet, *caOptions) {
	o := &caOptions{subject: "CN=azscep CA,O=azscep", validity: "3650d", keyType: "RSA-HSM", keySize: 3072, curve: "P-256"}
	fs := flag.NewFlagSet("azscep ca "+sub, flag.ContinueOnError)
	switch {
	case sub == "init" || sub == "":
		fs.StringVar(&o.subject, "subject", o.subject, "CA subject (init): comma-separated RDNs, e.g. \"CN=Contoso Device CA,O=Contoso,C=US\"")
		fs.StringVar(&o.validity, "validity", o.validity, "root validity (init)")
		fs.StringVar(&o.keyType, "key-type", o.keyType, "Key Vault key type (init): RSA-HSM, EC-HSM, RSA or EC; local mode: RSA or EC")
		fs.IntVar(&o.keySize, "key-size", o.keySize, "RSA key size (init): 3072 or 4096")
		fs.StringVar(&o.curve, "curve", o.curve, "EC curve (init): P-256 or P-384")
		fs.BoolVar(&o.subordinate, "subordinate", false, "init: print a CSR for a parent CA instead of making a root")
	case sub == "import", sub == "rotate-ra", sub == "show":
	default:
		return nil, nil
	}
	if sub == "import" || sub == "" {
		fs.StringVar(&o.certFile, "cert", "", "import: PEM file with the signed CA certificate first, then its issuers")
	}
	if sub == "rotate-ra" || sub == "" {
		fs.BoolVar(&o.compromised, "compromised", false, "rotate-ra: revoke the current RA at once (keyCompromise) instead of keeping it for the 7-day overlap")
	}
	return fs, o
}

// versionText is `azscep version`: the module version (a tag, or Go's pseudo-version from the VCS), the VCS
// revision and time, whether the tree was modified, and the Go version, all from the build information.
func versionText(info *debug.BuildInfo, ok bool) string {
	if !ok {
		return "azscep (no build information)\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "azscep %s\n", info.Main.Version)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = "unknown (built without VCS information)"
	}
	if settings["vcs.modified"] == "true" {
		rev += " (modified)"
	}
	fmt.Fprintf(&b, "revision: %s\n", rev)
	if t := settings["vcs.time"]; t != "" {
		fmt.Fprintf(&b, "commit time: %s\n", t)
	}
	fmt.Fprintf(&b, "go: %s %s/%s\n", info.GoVersion, settings["GOOS"], settings["GOARCH"])
	return b.String()
}

// version is what the binary reports to Intune as its provider version: the module version, or the short VCS
// revision when the module version is the development placeholder.
var version = func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "dev"
}()

// configCheck is `azscep config check`: environ loaded as serve loads it, its errors and warnings printed on
// stdout, one a line. It exits 1 when the service would not start or would serve with a feature disabled, 0
// otherwise (warnings included: they disable nothing, yet). No line holds a setting's value.
func configCheck(environ []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(environ)
	if err != nil {
		fmt.Fprintf(stderr, "azscep: configuration error: %v\n", err)
		return 1
	}
	errs, unread := 0, 0
	if err := cfg.CheckServe(); err != nil {
		fmt.Fprintf(stdout, "error: %v\n", err)
		errs++
	}
	for _, f := range cfg.FaultList() {
		if readsReference(cfg, f.Err.Setting) {
			fmt.Fprintf(stdout, "not read: %s is a Key Vault reference; the service reads it at start\n", f.Err.Setting)
			unread++
			continue
		}
		fmt.Fprintf(stdout, "error: %s is disabled: %v\n", f.Feature, f.Err)
		errs++
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "warning: %s (%s): %s\n", w.Feature, w.Code, w.Message)
	}
	fmt.Fprintf(stdout, "%d errors, %d warnings, %d Key Vault references not read\n", errs, len(cfg.Warnings), unread)
	if errs > 0 {
		return 1
	}
	return 0
}
