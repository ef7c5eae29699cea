package csrapi_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/entra"
)

// opensslConf is a minimal request configuration, so the test does not depend on the system's openssl.cnf.
const opensslConf = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
`

// openssl runs the openssl command line in dir and fails the test with its output on error.
func openssl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+filepath.Join(dir, "openssl.cnf"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestOpenSSLEndToEnd: keys and requests made by the openssl command line, posted as the PEM files openssl
// writes, come back as certificates that `openssl verify` accepts against the CA for TLS client use, for the
// key openssl generated.
func TestOpenSSLEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("the openssl command line is required for this test: %v", err)
	}
	e := newEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "openssl.cnf"), []byte(opensslConf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	alice := newUser("alice")

	cases := []struct {
		name    string
		keyArgs []string
		subj    string
		ext     []string
		token   string
		accept  string
	}{
		{name: "rsa", keyArgs: []string{"-newkey", "rsa:2048"}, subj: "/CN=openssl-rsa/O=Contoso",
			ext: []string{"-addext", "subjectAltName=DNS:openssl-rsa.contoso.test"}, token: e.appToken()},
		{name: "ec", keyArgs: []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}, subj: "/CN=" + alice.upn,
			ext: []string{"-addext", "extendedKeyUsage=clientAuth",
				"-addext", "subjectAltName=otherName:1.3.6.1.4.1.311.20.2.3;UTF8:" + alice.upn},
			token: e.userToken(alice, []string{entra.RoleCSRSelfService}), accept: "application/x-pem-file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keyFile, csrFile, certFile := tc.name+".key", tc.name+".csr", tc.name+".crt"
			args := append([]string{"req", "-new"}, tc.keyArgs...)
			args = append(args, "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", tc.subj, "-sha256")
			args = append(args, tc.ext...)
			openssl(t, dir, args...)
			body, err := os.ReadFile(filepath.Join(dir, csrFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(body, []byte("-----BEGIN CERTIFICATE REQUEST-----")) {
				t.Fatalf("openssl wrote %q…, want a PEM request", body[:min(len(body), 40)])
			}

			r := e.do(request{body: body, contentType: "application/pkcs10", auth: bearer(tc.token), accept: tc.accept})
			var out []byte
			if tc.accept == "" {
				cert := e.wantCert(r)
				out = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
			} else {
				if r.StatusCode != 200 {
					t.Fatalf("status %d: %s", r.StatusCode, r.body)
				}
				b, _ := pem.Decode(r.body) // the leaf comes first in the chain
				if b == nil {
					t.Fatalf("response is not PEM: %q", r.body)
				}
				cert, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				e.record(cert)
				out = pem.EncodeToMemory(b)
			}
			if err := os.WriteFile(filepath.Join(dir, certFile), out, 0o600); err != nil {
				t.Fatal(err)
			}

			got := openssl(t, dir, "verify", "-CAfile", "ca.pem", "-purpose", "sslclient", certFile)
			if strings.TrimSpace(got) != certFile+": OK" {
				t.Fatalf("openssl verify: %q", got)
			}
			// The certificate is for the key openssl generated, not just any key.
			keyPub := openssl(t, dir, "pkey", "-in", keyFile, "-pubout")
			certPub := openssl(t, dir, "x509", "-in", certFile, "-noout", "-pubkey")
			if keyPub != certPub {
				t.Fatalf("certificate public key differs from the generated key:\n%s\n%s", certPub, keyPub)
			}
			text := openssl(t, dir, "x509", "-in", certFile, "-noout", "-ext", "extendedKeyUsage,basicConstraints")
			if !strings.Contains(text, "TLS Web Client Authentication") || !strings.Contains(text, "CA:FALSE") {
				t.Fatalf("certificate extensions:\n%s", text)
			}
			if strings.Contains(text, "Server Authentication") {
				t.Fatalf("certificate has serverAuth:\n%s", text)
			}
		})
	}
	if n := e.records(""); n != 2 {
		t.Fatalf("records = %d, want 2", n)
	}
}
