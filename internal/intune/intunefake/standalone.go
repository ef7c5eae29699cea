package intunefake

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// ServeConfig configures the standalone fake started by ListenAndServe.
type ServeConfig struct {
	// CertFile is where the PEM of the fake's self-signed TLS certificate is
	// written (mode 0644), so the CA under test can be told to trust it.
	// Required.
	CertFile string
	// Hostnames are extra DNS names or IPs for the certificate; localhost,
	// 127.0.0.1 and ::1 are always included.
	Hostnames []string
	// PublicURL is the base URL advertised in discovery and metadata.
	// Default https://<listen address> (0.0.0.0/[::] become 127.0.0.1).
	PublicURL string
	// Options configures the fake itself.
	Options Options
	// Ready, if set, is called once the fake is listening, e.g. to print
	// the settings (AuthorityHost, TenantID, ClientID, ClientSecret).
	Ready func(*Server)
}

// ListenAndServe runs the fake as a standalone HTTPS server on addr until
// ctx is canceled (then it shuts down gracefully and returns nil).
// Besides the Entra/Graph/Intune routes it serves the JSON admin routes:
//
//	POST /fake/challenges   body: a Challenge, e.g.
//	    {"password":"p","expiresAt":"2030-01-01T00:00:00Z","subject":"CN=dev1",
//	     "upns":["u@contoso.com"],"keyUsage":5,"extKeyUsages":["clientAuth"],"keySize":2048}
//	    → 201 {"password":"p"}
//	POST /fake/revocations  body: {"serialNumber":"…","issuerName":"…","caConfiguration":"…",
//	                               "requestContext":"…"(optional)}
//	    or {"fromIssued":"<serial or thumbprint reported in successNotification>"}
//	    → 201 {"requestContext":"…"}
//	GET  /fake/journal      → the request journal (JSON array)
//	GET  /fake/issued       → successNotification records
//	GET  /fake/uploads      → uploaded revocation results
//
// The admin routes are unauthenticated: bind the fake to loopback only.
func ListenAndServe(ctx context.Context, addr string, cfg ServeConfig) error {
	if cfg.CertFile == "" {
		return errors.New("intunefake: ServeConfig.CertFile is required")
	}
	s, err := newServer(cfg.Options, cfg.Hostnames)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("intunefake: listening on %s: %w", addr, err)
	}
	defer ln.Close()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.tlsCert.Certificate[0]})
	if err := os.WriteFile(cfg.CertFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("intunefake: writing %s: %w", cfg.CertFile, err)
	}
	base := strings.TrimRight(cfg.PublicURL, "/")
	if base == "" {
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		base = "https://" + net.JoinHostPort(host, port)
	}
	s.mu.Lock()
	s.base = base
	s.mu.Unlock()

	srv := &http.Server{
		Handler:           s,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.tlsCert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	if cfg.Ready != nil {
		cfg.Ready(s)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("intunefake: serving: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("intunefake: shutting down: %w", err)
		}
		return nil
	}
}

// handleAdmin serves the /fake/* test-control routes.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request, e *Entry) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/fake/challenges":
		var c Challenge
		if err := strictDecode(e.Body, &c); err != nil {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", "challenge: "+err.Error())
			return
		}
		if err := s.RegisterChallenge(c); err != nil {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		s.writeJSON(w, e, http.StatusCreated, map[string]string{"password": c.Password})
	case r.Method == http.MethodPost && r.URL.Path == "/fake/revocations":
		var req struct {
			RevocationRequest
			FromIssued string `json:"fromIssued"`
		}
		if err := strictDecode(e.Body, &req); err != nil {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", "revocation: "+err.Error())
			return
		}
		var (
			rc  string
			err error
		)
		if req.FromIssued != "" {
			rc, err = s.RevokeIssued(req.FromIssued)
		} else {
			rc, err = s.EnqueueRevocation(req.RevocationRequest)
		}
		if err != nil {
			s.reject(w, e, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		s.writeJSON(w, e, http.StatusCreated, map[string]string{"requestContext": rc})
	case r.Method == http.MethodGet && r.URL.Path == "/fake/journal":
		s.writeJSON(w, e, http.StatusOK, s.Journal())
	case r.Method == http.MethodGet && r.URL.Path == "/fake/issued":
		s.writeJSON(w, e, http.StatusOK, s.IssuedCertificates())
	case r.Method == http.MethodGet && r.URL.Path == "/fake/uploads":
		s.writeJSON(w, e, http.StatusOK, s.UploadedResults())
	default:
		s.reject(w, e, http.StatusNotFound, "NotFound", "no admin route "+r.Method+" "+r.URL.Path)
	}
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// generateTLSCert makes a self-signed ECDSA certificate for loopback (and
// hostnames) and a pool that trusts it.
func generateTLSCert(hostnames []string) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("intunefake: generating TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("intunefake: generating serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "intunefake", Organization: []string{"azscep test fake"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hostnames {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("intunefake: creating TLS certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("intunefake: parsing TLS certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
