// Command intunefake runs the strict Entra + Graph + Intune fake as a standalone HTTPS server on loopback, so
// `make run` can offer an `intune` SCEP endpoint locally. It writes its TLS certificate and an env file with the
// AZSCEP_INTUNE_* settings that point the CA at it. It is a development tool; nothing in Azure uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/azscep/azscep/internal/intune/intunefake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7443", "listen address (loopback only)")
	certFile := flag.String("cert", ".local/intunefake.pem", "where to write the fake's TLS certificate")
	envFile := flag.String("env", ".local/intunefake.env", "where to write the AZSCEP_INTUNE_* settings")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cert, _ := filepath.Abs(*certFile)
	err := intunefake.ListenAndServe(ctx, *addr, intunefake.ServeConfig{CertFile: cert, Ready: func(s *intunefake.Server) {
		env := fmt.Sprintf("AZSCEP_INTUNE_TENANT_ID=%s\nAZSCEP_INTUNE_CLIENT_ID=%s\nAZSCEP_INTUNE_CLIENT_SECRET=%s\n"+
			"AZSCEP_INTUNE_CREDENTIAL=secret\nAZSCEP_INTUNE_AUTHORITY=%s\nAZSCEP_INTUNE_GRAPH_URL=%s\nAZSCEP_INTUNE_CA_BUNDLE=%s\n",
			s.TenantID(), s.ClientID(), s.ClientSecret(), s.AuthorityHost(), s.GraphBase(), cert)
		if err := os.WriteFile(*envFile, []byte(env), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "intunefake:", err)
			os.Exit(1)
		}
		fmt.Printf("intunefake listening on %s (settings in %s)\n", s.URL(), *envFile)
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "intunefake:", err)
		os.Exit(1)
	}
}
