package main

import (
	"crypto/x509"
	"testing"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// zlintAccepted lists the zlint findings accepted for certificates this CA issues, each with its reason.
var zlintAccepted = map[string]string{
	// RFC 5280 §4.2.1.12 lists digitalSignature/keyAgreement for clientAuth; Intune SCEP profiles ask for
	// keyEncipherment too (RSA key transport in Wi-Fi/VPN), so the intune profile carries it.
	"e_key_usage_and_extended_key_usage_inconsistent": "intune profile requests keyEncipherment with clientAuth",
	// Intune's IntuneDeviceId://<guid> URI has a GUID where zlint expects a host name; Intune requires the form.
	"e_ext_san_uri_host_not_fqdn_or_ip": "IntuneDeviceId:// URIs carry a device GUID by Intune's design",
}

// lintIssued runs zlint v3 over an issued certificate and fails on any error or warning not accepted above.
func lintIssued(t *testing.T, c *x509.Certificate) {
	t.Helper()
	zc, err := zx509.ParseCertificate(c.Raw)
	if err != nil {
		t.Fatalf("zcrypto cannot parse the certificate: %v", err)
	}
	rs := zlint.LintCertificate(zc)
	for name, r := range rs.Results {
		if r.Status >= lint.Warn && r.Status != lint.NA && r.Status != lint.NE {
			if _, ok := zlintAccepted[name]; ok {
				continue
			}
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}
}
