package scep_test

import (
	"context"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"

	"github.com/azscep/azscep/internal/testca"
)

// TestRecordDeviceIDFromEitherDeviceURI: a certificate names its Intune device with IntuneDeviceId://<id> or, in
// SCEP profiles written for Cisco ISE, with ID:Microsoft Endpoint Manager:GUID:<id>; both are the same identity to
// the policy (identity_uris=intunedeviceid) and to relying parties. The record carries that device ID either way,
// so that an administrator who searches a lost device's certificates by its ID (the console's device search)
// finds them all and can revoke them.
func TestRecordDeviceIDFromEitherDeviceURI(t *testing.T) {
	t.Parallel()
	const device = "6f1c3c8e-7d59-4a57-9a43-5c3f0b2d8e11"
	for i, raw := range []string{
		"IntuneDeviceId://" + device,
		"ID:Microsoft Endpoint Manager:GUID:" + device,
		"ID:Microsoft%20Endpoint%20Manager:GUID:" + device,
		"IntuneDeviceId://" + strings.ToUpper(device), // recorded in lower case, as /api/csr records it
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, envOptions{})
		d := enrollNamed(t, e, epStatic, i, testca.CSROptions{Subject: pkix.Name{CommonName: "kiosk-3"},
			URIs: []*url.URL{u}, ChallengePassword: staticSecret})
		rec, err := e.mem.Get(context.Background(), hexSerial(d.cert))
		if err != nil {
			t.Fatal(err)
		}
		if rec.DeviceID != device {
			t.Errorf("%s: record device ID %q, want %q", raw, rec.DeviceID, device)
		}
	}
}
